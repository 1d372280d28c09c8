"""`lcp-tune search`: learn layer compensations with a Ray Tune search, prune, fine-tune, report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from lcp_tune.config import default_of, help_of
from lcp_tune.errors import LcpTuneError

from .options import Command, config_options, fail, given, path_option
from .prune import spread_values

SEARCH_KEYS = ("arch", "data", "data_dir", "val_fraction", "val_max", "subset", "image_size", "workers", "prune.budget",
               "method", "search.space", "search.center", "search.num_samples", "search.tau_hat", "search.searcher",
               "search.scheduler", "prune.metric", "prune.form", "prune.safeguard", "prune.resource", "prune.round_to",
               "prune.latency_batch", "prune.latency_threads", "seed", "checkpoint",
               "recipe", "finetune.epochs", "search.cpus_per_trial", "search.gpus_per_trial",
               "search.max_concurrent", "search.shared_data", "device", "finetune.distill", "finetune.distill_temperature",
               "finetune.distill_weight", "baselines", "finetune_workers", "finetune_cpus_per_worker",
               "search.finalists")


class _SearchCommand(Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(list(args), ("--budgets", "--race")))


@click.command("search", cls=_SearchCommand)
@config_options(SEARCH_KEYS)
@click.option("--budgets", type=float, multiple=True,
              help="Learn once, fine-tune many: search at the first budget, then fine-tune the learned "
                   "compensation at each of the others too (--budgets 0.5 0.3 0.15); instead of --budget.")
@click.option("--race", type=click.FloatRange(min=0), multiple=True,
              help=help_of("search.race") + " [default: " + (" ".join(f"{m:g}" for m in default_of("search.race"))
                                                              or "none") + "]")
@click.option("--address", help="Connect to a running Ray cluster: auto or host:port.")
@click.option("--storage", help="Shared folder or URI (s3://, gs://) for Ray Tune's results.")
@click.option("--dashboard", is_flag=True, help="Start local Ray with its dashboard on 127.0.0.1.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines; only the final report.")
@path_option("--resume", help="Continue the interrupted search in this folder.")
@path_option("--out", help="Experiment folder (default ./lcp-runs/search-<time>).")
def search(out: Optional[Path], resume: Optional[Path], address: Optional[str], storage: Optional[str],
           dashboard: bool, quiet: bool, budgets: tuple[float, ...], race: tuple[float, ...],
           **flags) -> None:
    """Learn layer compensations with a Ray Tune search, prune, fine-tune and report."""
    from lcp_tune.run.interrupts import Interrupted
    from lcp_tune.run.search import RunOptions, resume_search_experiment, run_search_experiment
    from lcp_tune.run.settings import resolve_config

    options = RunOptions(address=address, storage=storage, dashboard=dashboard, quiet=quiet)
    try:
        changes = given(SEARCH_KEYS, flags)
        if budgets:
            if "prune.budget" in changes:
                raise LcpTuneError("give either --budget (one) or --budgets (the search's first, then the others)")
            changes.update({"prune.budget": budgets[0], "budgets": tuple(budgets[1:])})
        if race:
            changes["search.race"] = () if race == (0,) else tuple(race)
        if resume is not None:
            resume_search_experiment(resume, click.echo, options, changes)
        else:
            run_search_experiment(resolve_config(changes), out, click.echo, options)
    except LcpTuneError as exc:
        fail(exc)
    except KeyboardInterrupt:   # before the experiment folder existed: nothing to resume
        fail(Interrupted("interrupted before the search started; nothing was written"))
