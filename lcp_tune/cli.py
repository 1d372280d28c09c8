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


FLAG_KEYS = {"arch": "arch", "data": "data", "data_dir": "data_dir", "seed": "seed",
             "val_fraction": "val_fraction", "subset": "subset", "image_size": "image_size",
             "workers": "workers",
             "checkpoint": "checkpoint", "budget": "prune.budget", "metric": "prune.metric",
             "form": "prune.form", "safeguard": "prune.safeguard", "num_samples": "search.num_samples",
             "tau_hat": "search.tau_hat", "searcher": "search.searcher", "scheduler": "search.scheduler",
             "cpus_per_trial": "search.cpus_per_trial", "gpus_per_trial": "search.gpus_per_trial",
             "max_concurrent": "search.max_concurrent", "finetune_epochs": "finetune.epochs",
             "base_epochs": "base_train.epochs", "method": "method"}


def _config_from_flags(space: Optional[str] = None, **flags) -> ExperimentConfig:
    """Defaults, then the search-space preset, then only the flags the user gave (None = not given)."""
    from search_spaces import load_preset

    from .config import DEFAULT_RECIPE, recipe_changes

    recipe = flags.pop("recipe", None) or DEFAULT_RECIPE.get(flags.get("data") or "digits", "digits")
    changes: dict = recipe_changes(recipe)
    if space is not None:
        changes.update(load_preset(space))
        changes["search.space"] = space
    changes.update({FLAG_KEYS[k]: v for k, v in flags.items() if v is not None and k in FLAG_KEYS})
    return ExperimentConfig().replace(**changes)


@click.group()
@click.version_option(package_name="lcp-tune")
def main() -> None:
    """Layer-compensated pruning of CNNs to a FLOPs budget, learned with Ray Tune."""


@main.command()
@click.option("--arch", help="Architecture name (default resnet20); see `lcp-tune list`.")
@click.option("--data", help="Dataset name (default digits, shipped with scikit-learn).")
@click.option("--data-dir", help="Folder holding the dataset on disk (real datasets only).")
@click.option("--val-fraction", type=float, help="Share of the training data held out for the search (default 0.15).")
@click.option("--subset", type=float, help="Share of the training data to search on, in (0, 1] (default 1).")
@click.option("--image-size", type=int, help="Input side override (default: the dataset's standard size).")
@click.option("--workers", type=int, help="Data-loading worker processes (default 0).")
@click.option("--budget", type=float, help="Fraction of the base FLOPs to keep, in (0, 1) (default 0.5).")
@click.option("--method", help="lcp (learned, default), random (best random compensation), global or uniform.")
@click.option("--space", help="Search-space preset: lcp (default), legr, or a path to a .yaml file.")
@click.option("--num-samples", type=int, help="Search trials, warm starts included (default 32).")
@click.option("--tau-hat", type=int, help="SGD steps of recovery per candidate (default 100).")
@click.option("--searcher", help="tpe (default), cmaes, gp, evolution, regression or random.")
@click.option("--scheduler", help="fifo (default) or asha (stops poor candidates early).")
@click.option("--metric", help="Channel metric: l2 (default), l1, bn or taylor.")
@click.option("--form", help="Compensation form: additive (LCP, default) or affine (LeGR).")
@click.option("--safeguard", type=float, help="Minimum kept fraction per channel group (default 0.1).")
@click.option("--seed", type=int, help="Seed for splits, base model, searcher and trials (default 0).")
@click.option("--checkpoint", help="Base model state_dict; without it a base model is trained and cached.")
@click.option("--recipe", help="Training recipe: digits, cifar, imagenet or cub (default: by dataset).")
@click.option("--finetune-epochs", type=int, help="Epochs of the final fine-tune (default: the recipe's).")
@click.option("--cpus-per-trial", type=int, help="CPU threads per trial (default 1).")
@click.option("--gpus-per-trial", type=float, help="GPUs per trial, fractional to share one (default 0).")
@click.option("--max-concurrent", type=int, help="Trials at once (default: what the resources fit).")
@click.option("--address", help="Connect to a running Ray cluster: auto or host:port.")
@click.option("--storage", help="Shared folder or URI (s3://, gs://) for Ray Tune's results.")
@click.option("--dashboard", is_flag=True, help="Start local Ray with its dashboard on 127.0.0.1.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines; only the final report.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the interrupted search in this folder.")
@click.option("--out", type=click.Path(path_type=Path), help="Experiment folder (default ./lcp-runs/search-<time>).")
def search(out: Optional[Path], resume: Optional[Path], address: Optional[str], storage: Optional[str],
           dashboard: bool, quiet: bool, **flags) -> None:
    """Learn layer compensations with a Ray Tune search, prune, fine-tune and report."""
    from .workflow import RunOptions, resume_search_experiment, run_search_experiment

    options = RunOptions(address=address, storage=storage, dashboard=dashboard, quiet=quiet)
    log = lambda line: click.echo(line)  # noqa: E731
    try:
        if resume is not None:
            requested = {FLAG_KEYS[k]: v for k, v in flags.items() if v is not None and k in FLAG_KEYS}
            report = resume_search_experiment(resume, log, options, requested)
        else:
            report = run_search_experiment(_config_from_flags(**flags), out, log, options)
    except LcpTuneError as exc:
        _fail(exc)
    _analyze_finished(report, log)


def _analyze_finished(report: dict, log) -> None:
    """Write the trial table, analysis.md and plots next to the results (the CLI's last step)."""
    from analysis import write_analysis

    folder = report.get("experiment")
    if not folder or not report.get("num_trials"):
        return   # global / uniform run no search: there are no trials to analyse
    try:
        result = write_analysis([folder], strict=False)
        log(f"analysis: {result.report} and {len(result.plots)} plots in {Path(folder) / 'plots'}")
    except LcpTuneError as exc:
        log(f"warning: the analysis could not be written: {exc}")


@main.command()
@click.option("--arch", default="resnet20", show_default=True, help="Architecture name.")
@click.option("--data", default="digits", show_default=True, help="Dataset name.")
@click.option("--data-dir", help="Folder holding the dataset on disk (real datasets only).")
@click.option("--image-size", type=int, help="Input side override (default: the dataset's standard size).")
@click.option("--recipe", help="Training recipe: digits, cifar, imagenet or cub (default: by dataset).")
@click.option("--epochs", type=int, help="Training epochs (default: the recipe's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pretrained", is_flag=True, help="Start from torchvision's pretrained weights (downloads them).")
@click.option("--checkpoint", help="Start from this state_dict instead of random weights.")
@click.option("--num-classes", type=int, help="Classes of the --checkpoint's head, when not the data's: the head is replaced.")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the state_dict (default: the cache).")
def train(arch: str, data: str, data_dir: Optional[str], image_size: Optional[int], recipe: Optional[str],
          epochs: Optional[int],
          seed: int, pretrained: bool, checkpoint: Optional[str], num_classes: Optional[int],
          out: Optional[Path]) -> None:
    """Train a base model with a recipe, report its test accuracy and save its state_dict."""
    from .base_model import train_base_command

    try:
        config = _config_from_flags(arch=arch, data=data, data_dir=data_dir, seed=seed, base_epochs=epochs,
                                    recipe=recipe, checkpoint=checkpoint, image_size=image_size)
        config = config.replace(pretrained=pretrained, checkpoint_classes=num_classes)
        train_base_command(config, out, log=lambda s: click.echo(s))
    except LcpTuneError as exc:
        _fail(exc)


@main.command(name="list")
def list_choices() -> None:
    """List the registered architectures, datasets, metrics, forms and searchers."""
    from search_spaces import list_presets

    from .data import list_datasets
    from .models import list_archs
    from .pruning import list_compensations, list_metrics
    from .searchers import list_searchers

    for title, names in (("architectures", list_archs()), ("datasets", list_datasets()),
                         ("metrics", list_metrics()), ("compensation forms", list_compensations()),
                         ("searchers", list_searchers()), ("search-space presets", list_presets())):
        click.echo(f"{title}: {', '.join(names)}")


def _register_subcommands() -> None:
    from .cli_analyze import analyze
    from .cli_export import export

    main.add_command(analyze)
    main.add_command(export)
    try:
        from .cli_prune import prune
    except ImportError:   # pragma: no cover  (the prune command ships with the engine)
        return
    main.add_command(prune)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
