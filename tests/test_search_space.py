"""The search box and its centre: plain global ranking (the papers') or uniform pruning."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from lcp_tune.config import ExperimentConfig
from lcp_tune.errors import LcpTuneError
from lcp_tune.models import build_model
from lcp_tune.pruning import Pruner
from lcp_tune.run.validate import validate_config
from lcp_tune.searchers.space import experiment_space


@pytest.fixture(scope="module")
def pruner():
    return Pruner(build_model("resnet20_tiny", 10, 1), (1, 8, 8))


def test_uniform_centre_puts_uniform_pruning_at_the_origin(pruner):
    config = ExperimentConfig().replace(**{"search.center": "uniform", "prune.budget": 0.4})
    identity, uniform = pruner.identity(), pruner.uniform(0.4)
    space = experiment_space(pruner, config, [identity, uniform])
    origin = {k: 0.0 for k in space.keys}
    assert np.allclose(space.vector(origin), uniform)
    assert np.allclose(list(space.warm_starts[1].values()), 0.0)       # uniform is the origin
    assert np.allclose(space.vector(space.warm_starts[0]), identity)   # global is still reachable
    assert pruner.plan(space.vector(origin), 0.4).kept == pruner.plan(uniform, 0.4).kept
    bound = config.search.bound
    assert all(lo <= -bound + 1e-12 and hi >= bound - 1e-12 for lo, hi in zip(space.low, space.high))
    # a point of the box is the centre plus the searched shifts
    shifted = dict(origin, c000=0.5)
    assert np.allclose(space.vector(shifted) - uniform, np.eye(len(space.keys))[0] * 0.5)


def test_global_centre_is_the_papers_space(pruner):
    config = ExperimentConfig().replace(**{"prune.budget": 0.4})
    identity, uniform = pruner.identity(), pruner.uniform(0.4)
    space = experiment_space(pruner, config, [identity, uniform])
    assert space.center == ()
    assert np.allclose(space.vector({k: 0.0 for k in space.keys}), identity)
    assert np.allclose(space.vector(space.warm_starts[1]), uniform)


def test_unknown_centre_is_one_line():
    with pytest.raises(LcpTuneError, match="unknown search centre 'middle': must be one of global, uniform"):
        validate_config(ExperimentConfig().replace(**{"search.center": "middle"}))
    from lcp_tune.cli import main

    result = CliRunner().invoke(main, ["search", "--center", "middle"])
    assert result.exit_code == 2 and "middle" in result.output and "Traceback" not in result.output


def test_report_names_a_method_that_granularity_keeps_under_its_budget():
    from lcp_tune.run.report import format_report, under_budget

    methods = {"lcp": {"flops_ratio": 0.149}, "global": {"flops_ratio": 0.139}}
    assert under_budget(methods, 0.15, "flops") == {"global": 0.139}
    report = {"arch": "a", "data": "d", "budget": 0.15, "resource": "flops", "base_test_acc": 0.9, "test_images": 10,
              "num_trials": 0, "under_budget": {"global": 0.139},
              "methods": {n: {**m, "test_acc": 0.8, "gap": 0.1, "params_ratio": 0.2} for n, m in methods.items()}}
    notes = [line for line in format_report(report).splitlines() if line.startswith("note:")]
    assert notes == ["note: global ranking lands at 0.139 of the base flops for a 0.15 budget: no layer's next "
                     "channel step fits what is left (channel granularity)"]
