"""VectorSearcher: the Ray Tune Searcher plumbing shared by the evolution and regression searchers.

A subclass only proposes the next vector (`_propose`) and learns from a finished one
(`_observe`); this base handles what every lcp-tune searcher must do identically: warm starts
first and in order, flat keys <-> vector, clipping to the box, pending trials, dropping errored
trials, min/max, a seeded RNG and save/restore as plain Python (lists, dicts, floats), so a
checkpoint never depends on numpy's pickle format.

Returns from `suggest`: a config dict, or `Searcher.FINISHED` once `max_trials` suggestions
were made (never, by default: Tune's `num_samples` ends the search). It never returns None,
because it always has something to propose, even with every earlier trial still running.
"""
from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np
from ray.tune.search import Searcher

from ..errors import LcpTuneError
from .space import SearchSpace


class VectorSearcher(Searcher):
    """A seeded Searcher over a SearchSpace box; subclasses implement `_propose` and `_observe`.

    Args:
        space: keys, box bounds and warm starts (evaluated first, in order).
        seed: seeds the searcher's only RNG, so the same results give the same suggestions.
        metric: the result key to optimise; given here because Tune does not pass it when
            param_space is empty (RAY_NOTES pitfall 11).
        mode: "min" or "max".
        max_trials: suggest `Searcher.FINISHED` after this many suggestions; None = unbounded.
    """

    def __init__(self, space: SearchSpace, seed: int, metric: str = "val_loss", mode: str = "min",
                 max_trials: Optional[int] = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.low = np.asarray(space.low, dtype=float)
        self.high = np.asarray(space.high, dtype=float)
        self.max_trials = max_trials
        self.rng = np.random.default_rng(seed)
        self.num_suggested = 0
        self.pending: dict[str, np.ndarray] = {}
        self.history: list[tuple[np.ndarray, float]] = []   # (vector, loss), loss: lower is better
        self.num_failed = 0

    # ---- Tune's Searcher interface -------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[dict]:
        """Next config: the warm starts in order, then the subclass's proposal, clipped to the box."""
        if trial_id in self.pending:    # asked again for the same trial: same answer
            return self._config(self.pending[trial_id])
        if self.max_trials is not None and self.num_suggested >= self.max_trials:
            return Searcher.FINISHED
        warm = self.space.warm_starts
        if self.num_suggested < len(warm):
            vector = np.array([warm[self.num_suggested][k] for k in self.space.keys], dtype=float)
        else:
            vector = self._propose()
        vector = np.clip(vector, self.low, self.high)
        self.num_suggested += 1
        self.pending[trial_id] = vector
        return self._config(vector)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                          error: bool = False) -> None:
        """Learn from a finished trial; errored or metric-less (or NaN) results are dropped."""
        vector = self.pending.pop(trial_id, None)
        if vector is None:
            return   # unknown or already completed: nothing to learn
        loss = self._loss(result, error)
        if loss is None:
            self.num_failed += 1
            return
        self.history.append((vector, loss))
        self._observe(vector, loss)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values=None) -> None:
        """Learn from a point evaluated outside this searcher (e.g. an earlier run)."""
        vector = np.clip([float(parameters[k]) for k in self.space.keys], self.low, self.high)
        loss = self._loss({self.metric: value}, error)
        if loss is not None:
            self.history.append((vector, loss))
            self._observe(vector, loss)

    def save(self, checkpoint_path: str) -> None:
        """JSON, never pickle: restoring a folder someone handed you runs no code from it."""
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        try:
            with open(checkpoint_path) as f:
                state = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LcpTuneError(f"searcher state {checkpoint_path} is not lcp-tune's JSON ({exc}); "
                               f"it cannot be resumed") from None
        self.set_state(state)

    def get_state(self) -> dict:
        """Everything needed to continue identically, as plain Python values."""
        return {"format": 1, "class": type(self).__name__, "metric": self.metric, "mode": self.mode,
                "rng": self.rng.bit_generator.state, "num_suggested": self.num_suggested,
                "num_failed": self.num_failed,
                "pending": {t: v.tolist() for t, v in self.pending.items()},
                "history": [(v.tolist(), loss) for v, loss in self.history],
                "extra": self._get_extra()}

    def set_state(self, state: dict) -> None:
        if state.get("class") != type(self).__name__:
            raise ValueError(f"searcher checkpoint is for {state.get('class')!r}, "
                             f"not {type(self).__name__!r}: restore it with the same --searcher")
        self._metric, self._mode = state["metric"], state["mode"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.num_suggested, self.num_failed = state["num_suggested"], state["num_failed"]
        self.pending = {t: np.asarray(v, dtype=float) for t, v in state["pending"].items()}
        self.history = [(np.asarray(v, dtype=float), loss) for v, loss in state["history"]]
        self._set_extra(state["extra"])

    # ---- for subclasses ------------------------------------------------------------------
    def _propose(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _propose()")

    def _observe(self, vector: np.ndarray, loss: float) -> None:
        """Hook for state beyond `history` (e.g. a population); `history` is already updated."""

    def _get_extra(self) -> dict:
        return {}

    def _set_extra(self, extra: dict) -> None:
        pass

    # ---- helpers -------------------------------------------------------------------------
    @property
    def width(self) -> np.ndarray:
        return self.high - self.low

    def uniform(self, n: Optional[int] = None) -> np.ndarray:
        """Uniform random points in the box (one vector when n is None)."""
        shape = (len(self.low),) if n is None else (n, len(self.low))
        return self.low + self.rng.random(shape) * self.width

    def _config(self, vector: np.ndarray) -> dict:
        return {k: float(v) for k, v in zip(self.space.keys, vector)}

    def _loss(self, result: Optional[dict], error: bool) -> Optional[float]:
        """The objective as a loss (negated for mode='max'), or None when there is none."""
        if error or not result or result.get(self.metric) is None:
            return None
        value = float(result[self.metric])
        if not math.isfinite(value):
            return None
        return value if self.mode == "min" else -value
