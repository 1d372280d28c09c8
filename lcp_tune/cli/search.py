"""`lcp-tune search`: learn layer compensations with a Ray Tune search, prune, fine-tune, report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from lcp_tune.errors import LcpTuneError

from .options import Command, config_options, fail, given, path_option

SEARCH_KEYS = ("arch", "data", "data_dir", "val_fraction", "subset", "image_size", "workers", "prune.budget",
               "method", "search.space", "search.center", "search.num_samples", "search.tau_hat", "search.searcher",
               "search.scheduler", "prune.metric", "prune.form", "prune.safeguard", "seed", "checkpoint",
               "recipe", "finetune.epochs", "search.cpus_per_trial", "search.gpus_per_trial",
               "search.max_concurrent", "device", "finetune.distill", "finetune.distill_temperature",
               "finetune.distill_weight", "baselines", "finetune_workers", "finetune_cpus_per_worker")


@click.command("search", cls=Command)
@config_options(SEARCH_KEYS)
@click.option("--address", help="Connect to a running Ray cluster: auto or host:port.")
@click.option("--storage", help="Shared folder or URI (s3://, gs://) for Ray Tune's results.")
@click.option("--dashboard", is_flag=True, help="Start local Ray with its dashboard on 127.0.0.1.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines; only the final report.")
@path_option("--resume", help="Continue the interrupted search in this folder.")
@path_option("--out", help="Experiment folder (default ./lcp-runs/search-<time>).")
def search(out: Optional[Path], resume: Optional[Path], address: Optional[str], storage: Optional[str],
           dashboard: bool, quiet: bool, **flags) -> None:
    """Learn layer compensations with a Ray Tune search, prune, fine-tune and report."""
    from lcp_tune.run.interrupts import Interrupted
    from lcp_tune.run.search import RunOptions, resume_search_experiment, run_search_experiment
    from lcp_tune.run.settings import resolve_config

    options = RunOptions(address=address, storage=storage, dashboard=dashboard, quiet=quiet)
    try:
        changes = given(SEARCH_KEYS, flags)
        if resume is not None:
            resume_search_experiment(resume, click.echo, options, changes)
        else:
            run_search_experiment(resolve_config(changes), out, click.echo, options)
    except LcpTuneError as exc:
        fail(exc)
    except KeyboardInterrupt:   # before the experiment folder existed: nothing to resume
        fail(Interrupted("interrupted before the search started; nothing was written"))
