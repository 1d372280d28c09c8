"""The lcp-tune command line: each command validates its input and calls one library function."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from .config import ExperimentConfig
from .registry import LcpTuneError


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _config_from_flags(**flags) -> ExperimentConfig:
    """Defaults, overridden only by the flags the user gave (None = not given)."""
    mapping = {"arch": "arch", "data": "data", "data_dir": "data_dir", "seed": "seed",
               "checkpoint": "checkpoint", "budget": "prune.budget", "metric": "prune.metric",
               "form": "prune.form", "safeguard": "prune.safeguard", "num_samples": "search.num_samples",
               "tau_hat": "search.tau_hat", "searcher": "search.searcher",
               "cpus_per_trial": "search.cpus_per_trial", "finetune_epochs": "finetune.epochs",
               "base_epochs": "base_train.epochs"}
    changes = {mapping[k]: v for k, v in flags.items() if v is not None and k in mapping}
    return ExperimentConfig().replace(**changes)


@click.group()
@click.version_option(package_name="lcp-tune")
def main() -> None:
    """Layer-compensated pruning of CNNs to a FLOPs budget, learned with Ray Tune."""


@main.command()
@click.option("--arch", help="Architecture name (default resnet20); see `lcp-tune list`.")
@click.option("--data", help="Dataset name (default digits, shipped with scikit-learn).")
@click.option("--data-dir", help="Folder holding the dataset on disk (real datasets only).")
@click.option("--budget", type=float, help="Fraction of the base FLOPs to keep, in (0, 1) (default 0.5).")
@click.option("--num-samples", type=int, help="Search trials, warm starts included (default 32).")
@click.option("--tau-hat", type=int, help="SGD steps of recovery per candidate (default 100).")
@click.option("--searcher", help="tpe (default), cmaes, gp or random.")
@click.option("--metric", help="Channel metric: l2 (default), l1, bn or taylor.")
@click.option("--form", help="Compensation form: additive (LCP, default) or affine (LeGR).")
@click.option("--safeguard", type=float, help="Minimum kept fraction per channel group (default 0.1).")
@click.option("--seed", type=int, help="Seed for splits, base model, searcher and trials (default 0).")
@click.option("--checkpoint", help="Base model state_dict; without it a base model is trained and cached.")
@click.option("--finetune-epochs", type=int, help="Epochs of the final fine-tune (default 15).")
@click.option("--cpus-per-trial", type=int, help="CPU threads per trial (default 1).")
@click.option("--out", type=click.Path(path_type=Path), help="Experiment folder (default ./lcp-runs/search-<time>).")
def search(out: Optional[Path], **flags) -> None:
    """Learn layer compensations with a Ray Tune search, prune, fine-tune and report."""
    from .workflow import run_search_experiment

    try:
        run_search_experiment(_config_from_flags(**flags), out, log=lambda s: click.echo(s))
    except LcpTuneError as exc:
        _fail(exc)


@main.command()
@click.option("--arch", default="resnet20", show_default=True, help="Architecture name.")
@click.option("--data", default="digits", show_default=True, help="Dataset name.")
@click.option("--data-dir", help="Folder holding the dataset on disk (real datasets only).")
@click.option("--epochs", type=int, help="Training epochs (default 30).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the state_dict (default: the cache).")
def train(arch: str, data: str, data_dir: Optional[str], epochs: Optional[int], seed: int,
          out: Optional[Path]) -> None:
    """Train a base model and save its state_dict."""
    from .base_model import train_base_command

    try:
        config = _config_from_flags(arch=arch, data=data, data_dir=data_dir, seed=seed, base_epochs=epochs)
        train_base_command(config, out, log=lambda s: click.echo(s))
    except LcpTuneError as exc:
        _fail(exc)


@main.command(name="list")
def list_choices() -> None:
    """List the registered architectures, datasets, metrics, forms and searchers."""
    from .data import list_datasets
    from .models import list_archs
    from .pruning import list_compensations, list_metrics
    from .searchers import list_searchers

    for title, names in (("architectures", list_archs()), ("datasets", list_datasets()),
                         ("metrics", list_metrics()), ("compensation forms", list_compensations()),
                         ("searchers", list_searchers())):
        click.echo(f"{title}: {', '.join(names)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
