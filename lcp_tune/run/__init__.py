"""The workflow steps, one module each: validate, base model, search and resume, fine-tune,
report, prune-to-many and export. The CLI and the Python API call these and nothing lower."""
