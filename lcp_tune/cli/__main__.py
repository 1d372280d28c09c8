"""`python -m lcp_tune.cli`: the same as the `lcp-tune` command."""
from . import main

main(prog_name="lcp-tune")
