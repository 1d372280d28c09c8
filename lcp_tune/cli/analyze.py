"""`lcp-tune analyze`: experiment folders -> trials.parquet, plots/*.png and analysis.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .options import Command

from lcp_tune.errors import LcpTuneError


@click.command("analyze", cls=Command)
@click.argument("experiments", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder (default: the experiment folder for one experiment, "
                   "./lcp-runs/compare-<time> for several).")
def analyze(experiments: tuple[Path, ...], out: Optional[Path]) -> None:
    """Tabulate, plot and summarise one experiment, or compare several (e.g. searchers)."""
    from lcp_tune.analysis import write_analysis

    try:
        result = write_analysis(list(experiments), out)
    except LcpTuneError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"report: {result.report}")
    click.echo(f"trials: {result.out / 'trials.parquet'} ({len(result.trials)} rows)")
    for path in result.plots.values():
        click.echo(f"plot:   {path}")
