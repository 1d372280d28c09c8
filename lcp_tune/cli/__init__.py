"""The lcp-tune command line: one small module per command; each validates its input and calls
one function of lcp_tune.run (or lcp_tune.analysis). Nothing imports this package."""
from __future__ import annotations

import click

from .analyze import analyze
from .export import export
from .finetune import finetune
from .list import list_choices
from .prune import prune
from .search import search
from .train import train


@click.group()
@click.version_option(package_name="lcp-tune")
def main() -> None:
    """Layer-compensated pruning of CNNs to a FLOPs budget, learned with Ray Tune."""


for _command in (search, train, list_choices, prune, finetune, export, analyze):
    main.add_command(_command)
