"""`lcp-tune finetune EXPERIMENT --budgets ...`: a finished search's compensation at other budgets."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from lcp_tune.errors import LcpTuneError

from .options import fail
from .prune import _MultiValueCommand


@click.command("finetune", cls=_MultiValueCommand)
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--budgets", "--budget", "budgets", type=float, multiple=True, required=True,
              help="Fractions of the base FLOPs to keep, in (0, 1): --budgets 0.5 0.3 0.15.")
@click.option("--data-dir", help="Where the dataset is on this machine (default: the experiment's).")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the experiment's).")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
def finetune(experiment: Path, budgets: tuple[float, ...], data_dir: Optional[str], device: Optional[str],
             quiet: bool) -> None:
    """Prune EXPERIMENT's learned compensation to each budget, fine-tune fully, test, save.

    Writes EXPERIMENT/budgets/budget-<b>/, one row per budget in EXPERIMENT/budgets.json and
    EXPERIMENT/plots/budgets.png; budgets already there are not redone.
    """
    from lcp_tune.run.finetune_budgets import finetune_budgets

    try:
        finetune_budgets(experiment, budgets, log=click.echo, progress=None if quiet else click.echo,
                         data_dir=data_dir, device=device)
    except LcpTuneError as exc:
        fail(exc)
