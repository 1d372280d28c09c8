"""The search's progress line counts what is done and what still runs, as a user reads it."""
from __future__ import annotations

from types import SimpleNamespace

from lcp_tune.tune.progress import ProgressCallback, ProgressPrinter, printing_to


def test_the_trial_that_finishes_is_done_not_running():
    """Tune calls on_trial_complete while the finishing trial is still RUNNING: the last of 3
    trials reads [3/3 done, 0 running], never "1 running"."""
    lines: list[str] = []
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING", last_result={"val_loss": 1.0 - i / 10,
                                                                              "val_acc": 0.5, "flops_ratio": 0.3})
              for i in range(3)]
    callback = ProgressCallback()
    with printing_to(ProgressPrinter(3, lines.append)):
        for i, trial in enumerate(trials):
            callback.on_trial_complete(i, trials, trial)
            trial.status = "TERMINATED"
    assert [line.split("]")[0].strip() for line in lines] == ["[  1/3 done, 2 running", "[  2/3 done, 1 running",
                                                            "[  3/3 done, 0 running"]
    assert "best 0.8000" in lines[-1]
