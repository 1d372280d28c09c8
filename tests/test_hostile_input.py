"""Careless input: every answer is one line naming the input and what is allowed."""
from __future__ import annotations

import pytest

from lcp_tune.errors import LcpTuneError


@pytest.mark.parametrize("args, fragments", [
    (["--checkpoint", ""], ["--checkpoint is empty"]),
    (["--storage", "relative/runs"], ["--storage relative/runs must be an absolute folder"]),
    (["--seed", "-1"], ["--seed must be an integer >= 0, got -1"]),
    (["--max-concurrent", "-1"], ["--max-concurrent must be an integer >= 0"]),
    (["--finetune-epochs", "-3"], ["--finetune-epochs must be an integer >= 1"]),
    (["--arch", "resnet_twenty"], ["unknown architecture 'resnet_twenty'", "lcp-tune list"]),
])
def test_careless_search_input_is_one_short_line(tmp_path, args, fragments):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    result = CliRunner().invoke(main, ["search", *args, "--out", str(tmp_path / "exp")])
    assert_one_line_error(result, *fragments)
    assert len(result.output.strip()) < 200, result.output
    assert not (tmp_path / "exp").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_readme_prune_works_on_the_digits_run_and_refuses_repeated_budgets(finished_search, tmp_path):
    """`prune --compensation RUN/compensation.json --checkpoint RUN/base.pt`: the input shape
    (1-channel 8x8) comes from the compensation file's dataset."""
    from click.testing import CliRunner

    import lcp_tune
    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    common = ["prune", "--compensation", str(finished_search / "compensation.json"),
              "--checkpoint", str(finished_search / "base.pt")]
    result = CliRunner().invoke(main, [*common, "--budget", "0.3", "0.5", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    import torch
    assert lcp_tune.load_pruned(tmp_path / "out" / "budget-0.3")(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    result = CliRunner().invoke(main, [*common, "--budget", "0.3", "0.3", "--out", str(tmp_path / "again")])
    assert_one_line_error(result, "--budget 0.3 is given twice")
    assert not (tmp_path / "again").exists()


def test_nan_weights_and_nan_compensations_are_named_not_used(tmp_path):
    import numpy as np
    import torch

    import lcp_tune
    from lcp_tune.models import build_model
    from lcp_tune.store.checkpoints import load_state_dict

    model = build_model("resnet20_tiny", 10, 1)
    state = model.state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(LcpTuneError, match=r"nan.pt holds NaN values in 'layer1.0.conv1.weight'"):
        load_state_dict(tmp_path / "nan.pt")
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    with pytest.raises(LcpTuneError, match="holds infinite values"):
        load_state_dict(tmp_path / "inf.pt")
    assert lcp_tune.prune(model, 0.5, input_shape=(1, 8, 8))(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    with pytest.raises(LcpTuneError, match="compensation must be finite numbers; beta:conv1 is nan"):
        lcp_tune.prune(model, 0.5, input_shape=(1, 8, 8), compensation=np.full(12, np.nan))
    with pytest.raises(LcpTuneError, match="compensation must be numbers"):
        lcp_tune.prune(model, 0.5, input_shape=(1, 8, 8), compensation="0.5")


@pytest.mark.parametrize("shape, fragment", [
    ((1, -8, 8), "got (1, -8, 8)"), ("1,8,8", "got '1,8,8'"), ((), "got ()"), ((1.5, 8, 8), "got (1.5, 8, 8)"),
    ((1, 10**6, 10**6), "too large to trace"),
])
def test_prune_names_an_input_shape_it_cannot_trace(shape, fragment):
    import lcp_tune
    from lcp_tune.models import build_model

    with pytest.raises(LcpTuneError, match="input_shape") as info:
        lcp_tune.prune(build_model("resnet20_tiny", 10, 1), 0.5, input_shape=shape)
    assert fragment in str(info.value)
