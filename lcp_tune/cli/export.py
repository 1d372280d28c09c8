"""`lcp-tune export`: write an experiment's pruned network, check it, time base vs pruned.

The format list is fixed here rather
than read from lcp_tune.run.export so `lcp-tune --help` does not import torch.onnx.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .options import Command

from lcp_tune.errors import LcpTuneError

FORMATS = ("torchscript", "onnx", "state-dict")


@click.command("export", cls=Command)
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="torchscript (torch.jit), onnx (needs lcp-tune[export]) or state-dict (plan.json + model.pt).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Export folder, or a .pt / .onnx file (default EXPERIMENT/export/<format>/).")
@click.option("--trust-code", is_flag=True,
              help="Allow the experiment's plan.json to name a package.module:factory architecture.")
@click.option("--device", default="auto", show_default=True,
              help="Where base and pruned are timed: auto (CUDA when present), cpu, cuda or cuda:N.")
def export(experiment: Path, fmt: str, out: Optional[Path], trust_code: bool, device: str) -> None:
    """Export EXPERIMENT's pruned model, check its outputs against PyTorch, report latency."""
    from lcp_tune.run.export import export_experiment

    try:
        report = export_experiment(experiment, fmt, out, log=click.echo, trust_code=trust_code, device=device)
    except LcpTuneError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.table())
