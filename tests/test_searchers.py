"""The searcher contract (lcp_tune.testing) over the whole registry, plus one real Tune run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lcp_tune import testing
from lcp_tune.searchers import SearchSpace, list_searchers, make_searcher

SEARCHERS = list_searchers()
LEARNERS = [name for name in SEARCHERS if name != "random"]
# GP's cost grows with the number of trials (2-30 s for 25 in 12 dims, by machine load), so
# it gets one seed for the improvement check and a shorter continuation after restore
IMPROVE = {"gp": {"num_trials": 20, "seeds": (0,)}}
RESTORE = {"gp": {"after": 4}}


def factory(name: str):
    def make(space: SearchSpace, seed: int, mode: str = "min"):
        return make_searcher(name, space, seed, testing.METRIC, mode)
    return make


def test_registry_lists_every_searcher():
    assert set(SEARCHERS) >= {"tpe", "cmaes", "gp", "random", "evolution", "regression"}


@pytest.mark.parametrize("name", SEARCHERS)
def test_warm_starts_first(name):
    testing.check_warm_starts_first(factory(name))


@pytest.mark.parametrize("name", SEARCHERS)
def test_within_bounds(name):
    testing.check_within_bounds(factory(name))


@pytest.mark.parametrize("name", SEARCHERS)
def test_seeded(name):
    testing.check_seeded(factory(name))


@pytest.mark.parametrize("name", SEARCHERS)
def test_mode_max(name):
    testing.check_mode_max(factory(name))


@pytest.mark.parametrize("name", LEARNERS)
def test_learners_improve_on_warm_starts(name):
    testing.check_improves(factory(name), **IMPROVE.get(name, {}))


def test_random_beats_warm_starts():
    """Random search only has to find something better than both warm starts."""
    testing.check_improves(factory("random"), num_trials=40, margin=1.0)


@pytest.mark.parametrize("name", ["evolution", "regression"])
def test_maximising_learns(name):
    testing.check_improves(factory(name), num_trials=40, mode="max")


@pytest.mark.parametrize("name", SEARCHERS)
def test_restore_continues_identically(name, tmp_path):
    testing.check_restore(factory(name), tmp_path, **RESTORE.get(name, {}))


@pytest.mark.parametrize("name", SEARCHERS)
def test_survives_failed_trials(name):
    testing.check_survives_failures(factory(name))


# ---- one real Ray Tune run per custom searcher ---------------------------------------------

def _interrupt_after(count: int):
    """A Tune callback that sends SIGINT (Tune's own 'stop and save' signal) after `count` trials."""
    import os
    import signal

    from ray import tune

    class Interrupt(tune.Callback):
        done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            if self.done == count and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def _tuner(name: str, storage, num_samples: int, callbacks=()):
    from ray import tune

    space = testing.synthetic_space()
    return tune.Tuner(
        testing.synthetic_trainable,
        tune_config=tune.TuneConfig(
            metric=testing.METRIC, mode="min", num_samples=num_samples, reuse_actors=True,
            search_alg=make_searcher(name, space, 0, testing.METRIC, "min"), max_concurrent_trials=1,
            trial_dirname_creator=lambda trial: f"trial_{int(trial.experiment_tag.split('_')[0]):03d}"),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  callbacks=list(callbacks)))


@pytest.mark.ray
@pytest.mark.parametrize("name", ["evolution", "regression"])
def test_tune_run_warm_starts_and_restore(name, tmp_path, local_ray):
    """Warm starts run first; after an interrupt, Tuner.restore continues the searcher's state."""
    from ray import tune

    space = testing.synthetic_space()
    first = _tuner(name, tmp_path, 8, [_interrupt_after(4)]).fit()
    assert 0 < len(first) < 8, "the interrupt did not stop the run early"
    path = str(tmp_path / name)
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, trainable=testing.synthetic_trainable).fit()
    assert len(results) == 8 and results.num_errors == 0
    in_order = sorted(results, key=lambda r: Path(r.path).name)   # trial_001, trial_002, ...
    configs = np.array([[r.config[k] for k in space.keys] for r in in_order])
    np.testing.assert_allclose(configs[:2], [[p[k] for k in space.keys] for p in space.warm_starts])
    assert len({tuple(row) for row in configs}) == 8, "a restored searcher re-suggested old points"
