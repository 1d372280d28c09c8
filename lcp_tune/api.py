"""The Python API for notebooks and scripts: the same runs as the command line, as objects.

    >>> import lcp_tune
    >>> result = lcp_tune.search(budget=0.3, num_samples=8, tau_hat=25, finetune_epochs=2,
    ...                          out="runs/quick")                    # doctest: +SKIP
    >>> result.report["pruned_test_acc"], result.trials.val_loss.min()  # doctest: +SKIP
    >>> small = lcp_tune.prune(torchvision.models.resnet18(), 0.5, input_shape=(3, 224, 224))  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from lcp_tune.errors import LcpTuneError
from lcp_tune.pruning import Pruner
from lcp_tune.store.experiment import Experiment, new_experiment_path
from lcp_tune.store.files import read_json
from lcp_tune.store.pruned_io import load_pruned
from lcp_tune.trust import trust

from .run.search import RunOptions, resume_search_experiment, run_search_experiment
from .run.settings import dotted, resolve_config


@dataclass(frozen=True)
class SearchResult:
    """What a search left in its experiment folder, loaded: the report, trials, compensation, model."""

    experiment: Path
    report: dict                        # report.json: every method's test accuracy, FLOPs, ...
    trials: pd.DataFrame                # trials.parquet: one row per Ray Tune trial
    compensation: dict[str, float]      # the learned compensation, named per channel group
    model: nn.Module                    # the pruned, fine-tuned network (a smaller module, eval mode)


def search(*, out: Optional[Union[str, Path]] = None, resume: Optional[Union[str, Path]] = None,
           address: Optional[str] = None, storage: Optional[str] = None, quiet: bool = False,
           log: Optional[Callable[[str], None]] = print, **settings: Any) -> SearchResult:
    """Run `lcp-tune search` from Python: learn the compensation, prune, fine-tune, report.

    Args:
        out: the experiment folder (default ./lcp-runs/search-<time>).
        resume: an interrupted experiment folder to continue (settings must then be omitted
            or equal to the folder's).
        address, storage, quiet: as the CLI's --address, --storage and --quiet.
        log: where progress lines go (None: nowhere).
        **settings: the config fields by name, as the CLI's flags: arch, data, budget, method,
            searcher, num_samples, tau_hat, metric, form, safeguard, seed, checkpoint, recipe,
            finetune_epochs, ... `data` may also be a factory function returning
            (train, test[, val[, classes]]) torch Datasets.
    """
    settings = dict(settings)
    if callable(settings.get("data")):
        from lcp_tune.data.user import register_factory
        settings["data"] = register_factory(settings["data"])
    trust(v for k, v in settings.items() if k in ("arch", "data"))   # given here, by the user
    changes = dotted(settings)
    options = RunOptions(address=address, storage=storage, quiet=quiet)
    emit = log or (lambda line: None)
    if resume is not None:
        resume_search_experiment(Path(resume), emit, options, changes)
        folder = Path(resume)
    else:
        folder = Path(out) if out is not None else new_experiment_path()
        run_search_experiment(resolve_config(changes), folder, emit, options)
    return load_result(folder)


def load_result(experiment: Union[str, Path], trust_code: bool = False) -> SearchResult:
    """Load a finished experiment folder as a SearchResult (trust_code: see load_pruned)."""
    from lcp_tune.analysis import load_trials

    exp = Experiment(Path(experiment))
    if not exp.report_path.is_file():
        raise LcpTuneError(f"experiment {exp.root} has no report.json: its search has not finished")
    compensation = read_json(exp.compensation_path).get("values", {}) if exp.compensation_path.is_file() else {}
    return SearchResult(exp.root, read_json(exp.report_path), load_trials(exp.root), compensation,
                        load_pruned(exp.pruned_dir, trust_code))


def prune(model: nn.Module, budget: float, *, example_input: Optional[torch.Tensor] = None,
          input_shape: Optional[Sequence[int]] = None, compensation: Optional[Union[dict, np.ndarray,
                                                                                     Sequence[float]]] = None,
          metric: str = "l2", form: str = "additive", resource: str = "flops", safeguard: float = 0.1,
          round_to: int = 1) -> nn.Module:
    """Prune any `nn.Module` in memory to `budget` of its cost; returns a new, smaller module.

    The model is traced with `example_input` (or zeros of `input_shape`, one sample without the
    batch dimension); the result is checked (widths, FLOPs, output shape) before it is returned.
    Without `compensation` the channels are ranked globally (plain global ranking); with one (a
    vector in the Pruner's order, or {"beta:<group>": value} as in compensation.json) the ranking
    is compensated per group. The given model is not changed.

    >>> small = prune(torchvision.models.resnet18(), 0.5, input_shape=(3, 224, 224))  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise LcpTuneError(f"prune() needs an nn.Module, got {type(model).__name__}")
    if example_input is not None:
        input_shape = tuple(example_input.shape[1:])
    if input_shape is None:
        raise LcpTuneError("prune() needs example_input (a batch) or input_shape (one sample, e.g. (3, 224, 224))")
    pruner = Pruner(model, _shape(input_shape), metric, form, safeguard, round_to)
    plan = pruner.plan(_vector(pruner, compensation), budget, resource)
    return pruner.apply(plan)


MAX_SAMPLE = 1 << 28   # elements of one traced sample (1 GiB of float32): far beyond any image model


def _shape(input_shape) -> tuple[int, ...]:
    """One sample's shape as positive integers small enough to trace, or one line saying why not."""
    allowed = "a sequence of positive integers, one sample without the batch, e.g. (3, 224, 224)"
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise LcpTuneError(f"input_shape must be {allowed}; got {input_shape!r}"[:300])
    dims = list(input_shape)
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise LcpTuneError(f"input_shape must be {allowed}; got {tuple(dims)!r}"[:300])
    if int(np.prod([int(d) for d in dims], dtype=object)) > MAX_SAMPLE:
        raise LcpTuneError(f"input_shape {tuple(int(d) for d in dims)} holds more than {MAX_SAMPLE:,} values per "
                           f"sample: too large to trace")
    return tuple(int(d) for d in dims)


def _vector(pruner: Pruner, compensation) -> np.ndarray:
    if compensation is None:
        return pruner.identity()
    names = pruner.form.param_names(pruner.group_names)
    try:
        if isinstance(compensation, (str, bytes)):
            raise TypeError
        if isinstance(compensation, dict):
            from lcp_tune.store.compensation_file import CompensationRecord, compensation_vector
            record = CompensationRecord("", "", "", {str(k): float(v) for k, v in compensation.items()},
                                        path="the compensation dict")
            vector = compensation_vector(record, names)
        else:
            vector = np.asarray(compensation, dtype=float).ravel()
    except LcpTuneError:   # a ValueError too: its own line (a dict naming other groups) stands
        raise
    except (TypeError, ValueError):
        raise LcpTuneError(f"compensation must be numbers (a vector, or a dict like compensation.json's values), "
                           f"got {type(compensation).__name__}") from None
    if vector.shape != (len(names),):
        raise LcpTuneError(f"compensation has {vector.size} values; this model's channel groups need "
                           f"{len(names)} ({names[0]}, ...)")
    if not np.all(np.isfinite(vector)):
        first = names[int(np.flatnonzero(~np.isfinite(vector))[0])]
        raise LcpTuneError(f"compensation must be finite numbers; {first} is {vector[names.index(first)]}")
    return vector
