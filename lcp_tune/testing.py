"""Contract tests every registered searcher must pass, driven without Ray Tune.

In the style of optuna/testing/pytest_samplers.py: plain functions that take a searcher factory
(`make(space, seed, mode="min")`, e.g. `lambda s, seed, mode="min": make_searcher(name, s, seed,
"val_loss", mode)`) and assert; tests/test_searchers.py parametrizes them over the registry.
Each drives `suggest` / `on_trial_complete` directly on a synthetic objective, as Tune does with
one trial at a time (or several pending, where said), so a failure points at the searcher.

The objective is a weighted, shifted quadratic in 12 dimensions whose optimum lies away from
both warm starts, with weights that decay over the coordinates, as real compensation vectors
have a few groups that matter much and many that matter little. Its warm starts are poor on
purpose (any searcher that learns must beat them) and fixed (so are the seeds): a check that
passes passes every time; the margins were set with room to spare over 30 seeds per searcher.

Exactness, measured with optuna 5.0: the Optuna searchers are bit-identical after restore too,
because OptunaSearch.save pickles its whole __dict__ (the in-memory study and the seeded sampler
with its RNG state), and minimising f or maximising -f gives identical suggestions for all six
registered searchers. `exact=False` in check_restore / check_mode_max is for a future searcher
where that does not hold; it then asserts only that the search goes on, in bounds.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .searchers import SearchSpace

DIMS, BOUND = 12, 2.0
OPTIMUM = np.array([1.2, -1.0, 0.8, -1.3, 1.0, -0.6, 0.9, -1.1, 0.5, -0.7, 1.1, -0.4])
WEIGHTS = 0.75 ** np.arange(DIMS)
UNIFORM = np.array([-0.5, 0.6, -0.4, 0.5, -0.3, 0.4, -0.5, 0.3, -0.4, 0.5, -0.3, 0.4])
METRIC = "val_loss"

Factory = Callable[..., object]   # make(space, seed, mode="min") -> a Ray Tune Searcher
History = list[tuple[dict, Optional[float]]]


def synthetic_space(dims: int = DIMS, bound: float = BOUND) -> SearchSpace:
    """The contract's box: identity (all zeros) and a stand-in for uniform as warm starts."""
    return SearchSpace.box(dims, bound, [[0.0] * dims, UNIFORM[:dims].tolist()])


def objective(config: dict, space: SearchSpace) -> float:
    """Weighted squared distance to OPTIMUM: 0 at the optimum, larger at both warm starts."""
    x = np.array([config[k] for k in space.keys])
    return float(np.sum(WEIGHTS[: len(x)] * (x - OPTIMUM[: len(x)]) ** 2))


def drive(searcher, space: SearchSpace, num_trials: int, *, start: int = 0, batch: int = 1,
          mode: str = "min", fail: Callable[[int], Optional[str]] = lambda i: None) -> History:
    """Run trials `start..start+num_trials` as Tune would, `batch` pending at a time.

    `fail(i)` may return "error" (error=True, no result), "missing" (result without the
    metric) or "nan" for trial i. Returns (config, value) per trial in suggestion order, value
    None for a failed trial. With mode="max" the searcher sees minus the objective.
    """
    history: History = []
    sign = 1.0 if mode == "min" else -1.0
    for first in range(start, start + num_trials, batch):
        ids = range(first, min(first + batch, start + num_trials))
        configs = {j: searcher.suggest(f"trial_{j:04d}") for j in ids}
        outcomes = {}
        for j in reversed(ids):   # finish out of order, as concurrent trials do
            assert isinstance(configs[j], dict), f"suggest returned {configs[j]!r} for trial {j}"
            outcomes[j] = _complete(searcher, f"trial_{j:04d}", configs[j], fail(j),
                                    sign * objective(configs[j], space))
        history += [outcomes[j] for j in ids]
    return history


def _complete(searcher, trial_id: str, config: dict, how: Optional[str], value: float):
    """Report one trial's outcome the way Tune would for `how` (None = success)."""
    if how == "error":
        searcher.on_trial_complete(trial_id, None, error=True)
        return config, None
    result = {"training_iteration": 1}
    if how != "missing":
        result[METRIC] = float("nan") if how == "nan" else value
    searcher.on_trial_complete(trial_id, result)
    return config, (value if how is None else None)


def synthetic_trainable(config: dict) -> None:
    """A Ray Tune function trainable reporting the synthetic objective once (for Tune smoke tests).

    It lives here, not in a test file, because Ray workers must import it by module name.
    """
    from ray import tune
    tune.report({METRIC: objective(config, synthetic_space())})


def vectors(history: History, space: SearchSpace) -> np.ndarray:
    """The suggested configs as an array, one row per trial, columns in key order."""
    return np.array([[config[k] for k in space.keys] for config, _ in history])


# ---- the contract ------------------------------------------------------------------------

def check_warm_starts_first(make: Factory, seed: int = 0) -> None:
    """The warm starts are the first suggestions, in order, even with trials pending."""
    space = synthetic_space()
    searcher = make(space, seed)
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    for got, expected in zip(configs, space.warm_starts):
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[k] for k in space.keys], [expected[k] for k in space.keys])


def check_within_bounds(make: Factory, num_trials: int = 20, seed: int = 0) -> None:
    """Every suggestion has every key and lies in the box, with 3 trials pending at a time."""
    space = synthetic_space(bound=0.5)   # tight, so searchers that step outside are caught
    x = vectors(drive(make(space, seed), space, num_trials, batch=3), space)
    assert x.shape == (num_trials, len(space.keys))
    assert np.all(x >= np.array(space.low) - 1e-12) and np.all(x <= np.array(space.high) + 1e-12)
    assert len({tuple(row) for row in x}) == num_trials, "a suggestion was repeated"


def check_seeded(make: Factory, num_trials: int = 12) -> None:
    """Same seed -> same suggestions (one trial at a time); another seed -> other suggestions."""
    space = synthetic_space()
    first, again, other = (vectors(drive(make(space, seed), space, num_trials), space)
                           for seed in (0, 0, 1))
    np.testing.assert_array_equal(again, first)
    warm = len(space.warm_starts)
    assert not np.allclose(other[warm:], first[warm:]), "seed 1 gave seed 0's suggestions"


def check_mode_max(make: Factory, num_trials: int = 12, seed: int = 0, exact: bool = True) -> None:
    """Maximising -f suggests what minimising f does (exactly, or just as well when not exact)."""
    space = synthetic_space()
    low = vectors(drive(make(space, seed), space, num_trials), space)
    high = vectors(drive(make(space, seed, mode="max"), space, num_trials, mode="max"), space)
    if exact:
        np.testing.assert_allclose(high, low, rtol=0, atol=1e-9)
    else:
        assert np.all(np.isfinite(high)) and high.shape == low.shape


def check_improves(make: Factory, num_trials: int = 40, seeds=(0, 1, 2), margin: float = 0.45,
                   mode: str = "min") -> None:
    """Every run beats both warm starts by 10%, and on average gets below `margin` x them.

    Random search reaches a mean ratio of about 0.55 here (0.49-0.69 over 10 seed triples), the
    learners 0.02-0.25 on seeds 0-2 (at most 0.46 over 10 triples), so 0.45 tells a learner from
    random search. Random search is held only to the 10% (margin 1.0): its runs on seeds 0-2
    reach 0.35-0.84 (the worst of 30 seeds 0.93).
    """
    space = synthetic_space()
    warm = min(objective(p, space) for p in space.warm_starts)
    ratios = []
    for seed in seeds:
        history = drive(make(space, seed, mode=mode), space, num_trials, mode=mode)
        ratios.append(min(abs(v) for _, v in history if v is not None) / warm)
        assert ratios[-1] < 0.9, (f"seed {seed}: nothing 10% better than the warm starts in "
                                  f"{num_trials} trials (best / warm start {ratios[-1]:.3f})")
    assert np.mean(ratios) < margin, (f"best / warm start {np.round(ratios, 3)} after {num_trials} "
                                      f"trials: the mean must be below {margin}")


def check_restore(make: Factory, tmp_dir: Path, before: int = 8, after: int = 8, seed: int = 0,
                  exact: bool = True) -> None:
    """save() mid-run (one trial pending) and restore() into a fresh searcher: both continue alike.

    `exact=False` is for searchers whose restore is faithful but not bit-identical; then the
    restored one must still accept the pending trial's result and go on suggesting in bounds.
    """
    space = synthetic_space()
    original = make(space, seed)
    drive(original, space, before)
    pending = original.suggest("pending")
    path = str(Path(tmp_dir) / "searcher.pkl")
    original.save(path)
    restored = make(space, seed + 100)   # another seed: everything must come from the file
    restored.restore(path)
    for searcher in (original, restored):
        searcher.on_trial_complete("pending", {METRIC: objective(pending, space)})
    cont = [vectors(drive(s, space, after, start=before + 1), space) for s in (original, restored)]
    if exact:
        np.testing.assert_array_equal(cont[1], cont[0])
    assert np.all(cont[1] >= np.array(space.low)) and np.all(cont[1] <= np.array(space.high))
    pickle.dumps(restored)   # Tune pickles searchers with the experiment state


def check_survives_failures(make: Factory, num_trials: int = 16, seed: int = 0) -> None:
    """Errored, metric-less and NaN trials (warm starts included) do not stop the search."""
    space = synthetic_space()
    kinds = ["error", None, "missing", None, "nan", None, None, "error"]
    history = drive(make(space, seed), space, num_trials, batch=2,
                    fail=lambda i: kinds[i % len(kinds)])
    x = vectors(history, space)
    assert x.shape == (num_trials, len(space.keys)) and np.all(np.isfinite(x))
    assert any(v is not None and math.isfinite(v) for _, v in history)


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result (click's CliRunner) failed with one line naming every fragment, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


def assert_ends_in_error_line(result, *fragments: str) -> None:
    """A CLI run that printed its progress, then failed with one last line naming every fragment."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in last, result.output
