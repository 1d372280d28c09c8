"""`lcp-tune prune`: apply one learned compensation at several budgets (learn once, prune many).

Budgets and the input shape take several
values after one flag (`--budget 0.3 0.5 0.7`, `--input-shape 3 32 32`), as the README shows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import click

from lcp_tune.config import default_of, help_of
from lcp_tune.pruning.resources import RESOURCES

from lcp_tune.trust import trust

from .options import CHOICES, Command

from lcp_tune.errors import LcpTuneError

MULTI_VALUE = ("--budget", "--budgets", "--input-shape")


def _is_value(token: str) -> bool:
    if not token.startswith("-"):
        return True
    try:
        float(token)      # a negative number is a value (then refused by the budget check)
        return True
    except ValueError:
        return False


def spread_values(args: list[str], flags: tuple[str, ...] = MULTI_VALUE) -> list[str]:
    """Rewrite `--budget 0.3 0.5` as `--budget 0.3 --budget 0.5` for click's multiple=True."""
    out: list[str] = []
    flag, first = None, False
    for token in args:
        if token in flags:
            flag, first = token, True
            out.append(token)
        elif flag is not None and _is_value(token):
            out += [token] if first else [flag, token]
            first = False
        else:
            flag = None
            out.append(token)
    return out


class _MultiValueCommand(Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(list(args)))


@click.command("prune", cls=_MultiValueCommand)
@click.option("--arch", type=CHOICES["arch"], help="Architecture (default: the compensation file's); see `lcp-tune list`.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Base model state_dict (default: initial weights).")
@click.option("--compensation", type=click.Path(path_type=Path),
              help="compensation.json from a search (default: identity, plain global ranking).")
@click.option("--budget", "budgets", type=float, multiple=True, required=True,
              help="Fractions of the base cost to keep, in (0, 1): --budget 0.3 0.5 0.7.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for one pruned model per budget.")
@click.option("--input-shape", type=int, multiple=True, help="One sample's shape, e.g. 3 32 32 (default: the arch's).")
@click.option("--num-classes", type=int, default=10, show_default=True, help="Classifier outputs of the base model.")
@click.option("--metric", type=CHOICES["prune.metric"],
              help="Channel metric (default: the compensation file's, else l2).")
@click.option("--form", type=CHOICES["prune.form"],
              help="Compensation form (default: the compensation file's, else additive).")
@click.option("--resource", type=click.Choice(RESOURCES), default=default_of("prune.resource"), show_default=True,
              help=help_of("prune.resource"))
@click.option("--safeguard", type=float, default=default_of("prune.safeguard"), show_default=True,
              help=help_of("prune.safeguard"))
@click.option("--round-to", type=CHOICES["prune.round_to"], default=default_of("prune.round_to"), show_default=True,
              help=help_of("prune.round_to"))
@click.option("--device", default=default_of("device"), show_default=True,
              help="Where --resource latency is measured: auto, cpu, cuda or cuda:N.")
@click.option("--latency-batch", type=int, default=default_of("prune.latency_batch"), show_default=True,
              help=help_of("prune.latency_batch"))
@click.option("--latency-threads", type=int, default=default_of("prune.latency_threads"), show_default=True,
              help=help_of("prune.latency_threads"))
@click.option("--data", help="Dataset for the taylor metric's batches (default: the compensation file's).")
@click.option("--data-dir", help="Folder holding that dataset on disk.")
def prune(arch: Optional[str], checkpoint: Optional[Path], compensation: Optional[Path], budgets: tuple[float, ...],
          out: Path, input_shape: tuple[int, ...], num_classes: int, metric: Optional[str], form: Optional[str],
          resource: str, safeguard: float, round_to: Union[int, str], device: str, latency_batch: int, latency_threads: int,
          data: Optional[str], data_dir: Optional[str]) -> None:
    """Prune a base model to every budget with one compensation; write DIR/budget-<b>/ each."""
    from lcp_tune.run.prune_many import PruneRequest, prune_to_budgets

    try:
        trust([arch] if arch else [])   # typed by the user; an arch read from the file is not trusted
        if arch is None and compensation is None:
            raise LcpTuneError("--arch is required when no --compensation file names the architecture")
        request = PruneRequest(arch, tuple(budgets), out, checkpoint, compensation, num_classes,
                               tuple(input_shape) or None, metric, form, resource, safeguard, round_to,
                               device=device, latency_batch=latency_batch, latency_threads=latency_threads)
        if (metric or _file_metric(compensation)) == "taylor":
            request = _with_taylor_batches(request, data or _file_field(compensation, "data"), data_dir)
        prune_to_budgets(request, log=click.echo)
    except LcpTuneError as exc:
        raise click.ClickException(str(exc)) from None


def _file_field(path: Optional[Path], key: str) -> Optional[str]:
    if path is None:
        return None
    from lcp_tune.store.compensation_file import read_compensation
    return getattr(read_compensation(path), key)


def _file_metric(path: Optional[Path]) -> Optional[str]:
    return _file_field(path, "metric")


def _with_taylor_batches(request, data: Optional[str], data_dir: Optional[str]):
    """The taylor metric scores channels on a few training batches of the base's dataset."""
    from dataclasses import replace

    from lcp_tune.data import load_data

    if not data:
        raise LcpTuneError("metric 'taylor' needs training data: pass --data (and --data-dir)")
    splits = load_data(data, 0, data_dir=data_dir)
    loader = splits.loader("train", 64, shuffle=True, seed=0)
    batches = [b for _, b in zip(range(4), loader)]
    return replace(request, batches=batches, input_shape=request.input_shape or splits.input_shape)
