"""Training progress: a few plain lines in logs, one updating bar on a terminal, both with
throughput and time left, resumed runs starting where they were."""
from __future__ import annotations

import pytest

from lcp_tune import progress as progress_module
from lcp_tune.progress import TrainingProgress


def run(meter: TrainingProgress, first_epoch: int = 0) -> None:
    meter.start(first_epoch)
    for epoch in range(first_epoch, meter.epochs):
        for i in range(meter.per_epoch):
            meter.step(epoch * meter.per_epoch + i)
        meter.epoch(epoch, 1.0 / (epoch + 1), 0.5 + epoch / 100)
    meter.close()


def test_a_log_gets_a_line_at_each_quarter_and_at_the_end():
    lines: list[str] = []
    run(TrainingProgress("fine-tune lcp", 15, 10, 64, lines.append, interactive=False))
    assert len(lines) == 4                         # not one per epoch (15)
    assert [line.split("]")[1].split("%")[0].strip() for line in lines] == ["25", "50", "75", "100"]
    assert all("img/s" in line and "left" in line for line in lines)
    assert "epoch 15/15, train loss 0.067, val acc 0.6400" in lines[-1]


def test_a_resumed_run_says_where_it_goes_on_from_and_counts_from_there():
    lines: list[str] = []
    run(TrainingProgress("fine-tune lcp", 8, 10, 64, lines.append, interactive=False), first_epoch=5)
    assert "resuming at epoch 6/8" in lines[0]
    assert [line.split("]")[1].split("%")[0].strip() for line in lines[1:]] == ["75", "100"]


def test_long_quiet_stretches_get_a_line_anyway(monkeypatch):
    clock = iter(range(0, 100_000, 30))   # every call to the clock: 30 s later
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    meter = TrainingProgress("base resnet50", 1, 40, 256, lines.append, interactive=False)
    meter.start(0)
    for i in range(8):                    # 8 steps, 240 s, still under the first quarter
        meter.step(i)
    assert len(lines) >= 3 and all("~" in line for line in lines)


def test_a_terminal_gets_one_bar_that_updates_in_place(capsys):
    lines: list[str] = []
    run(TrainingProgress("fine-tune lcp", 3, 20, 64, lines.append, interactive=True))
    out = capsys.readouterr().out
    assert not lines                      # nothing through the log: the bar is the progress
    assert "fine-tune lcp" in out and "100%" in out and "\r" in out
    assert "img/s" in out and "epoch 3/3" in out


@pytest.mark.parametrize("steps", [1, 3])
def test_tiny_runs_still_end_with_their_last_line(steps):
    lines: list[str] = []
    run(TrainingProgress("fine-tune x", 1, steps, 8, lines.append, interactive=False))
    assert "100%" in lines[-1] and "epoch 1/1" in lines[-1]
    assert sum(" 100%" in line for line in lines) == 1     # said once


def test_a_run_that_had_already_finished_shows_nothing():
    lines: list[str] = []
    run(TrainingProgress("fine-tune lcp", 8, 10, 64, lines.append, interactive=False), first_epoch=8)
    assert lines == []
