"""Interrupting a search with SIGKILL and resuming it: finished trials kept, none rerun."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.run.search import RunOptions, resume_search_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SAMPLES = 8


def search_command(exp, checkpoint):
    return [sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--checkpoint",
            str(checkpoint), "--num-samples", str(SAMPLES), "--tau-hat", "60", "--finetune-epochs", "1",
            "--budget", "0.4", "--out", str(exp)]


def wait_for(predicate, timeout: float, proc=None) -> None:
    start = time.time()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the search exited early with {proc.returncode}")
        if time.time() - start > timeout:
            raise AssertionError("timed out waiting for the search")
        time.sleep(0.5)


def stop_when(command: list[str], ready, signum: int, timeout: float = 300) -> tuple[int, str]:
    """Run `command` in its own session; once `ready()`, send `signum` (SIGKILL: to the whole
    group, no clean-up; else to the driver only, as a terminal's Ctrl-C or a scheduler would)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ), text=True)
    try:
        wait_for(ready, timeout, proc)
        if signum == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signum)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output


def trained_base(tmp_path) -> str:
    checkpoint = tmp_path / "base.pt"
    result = CliRunner().invoke(main, ["train", "--arch", "resnet20_tiny", "--epochs", "2", "--out", str(checkpoint)])
    assert result.exit_code == 0, result.output
    return str(checkpoint)


def test_killed_then_interrupted_resume_keeps_every_finished_trial(tmp_path, local_ray):
    """SIGKILL mid-search (no clean-up), then Ctrl-C during the --resume (one line, exit 130, no
    final artefact), then --resume again: it finishes, and no trial finished before either stop
    is evaluated again; resuming the finished search only prints its report."""
    exp = tmp_path / "exp"
    cache = exp / "trial_cache"
    cached = lambda: {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")} if cache.is_dir() else {}  # noqa: E731
    stop_when(search_command(exp, trained_base(tmp_path)), lambda: len(cached()) >= 2, signal.SIGKILL, 240)
    killed = cached()
    assert 2 <= len(killed) < SAMPLES
    assert not (exp / "report.json").exists()

    resume = [sys.executable, "-m", "lcp_tune.cli", "search", "--resume", str(exp)]
    returncode, output = stop_when(resume, lambda: len(cached()) >= len(killed) + 2, signal.SIGINT, 240)
    assert returncode == 130, output
    assert "resuming the search" in output
    last = output.strip().splitlines()[-1]
    assert "interrupted by SIGINT" in last and "--resume" in last, output
    for final in ("report.json", "compensation.json", "pruned", "analysis.md"):
        assert not (exp / final).exists(), final
    interrupted = cached()
    assert len(killed) < len(interrupted) < SAMPLES
    assert all(interrupted[name] == mtime for name, mtime in killed.items())

    lines: list[str] = []
    report = resume_search_experiment(exp, lines.append, RunOptions())
    assert report["num_trials"] == SAMPLES and report["failed_trials"] == 0
    assert any("resuming the search" in line for line in lines)
    after = cached()
    for name, mtime in interrupted.items():   # evaluated before a stop: never evaluated again
        assert after[name] == mtime
    assert len(after) >= SAMPLES - 1          # the rest were evaluated once each
    trials = pd.read_parquet(exp / "trials.parquet").query("rung == 0")   # the search's own record of its trials
    assert len(trials) == SAMPLES and set(trials["status"]) == {"finished"}

    # resuming a finished search only prints its report: the final step ran once
    report_mtime = (exp / "report.json").stat().st_mtime_ns
    again: list[str] = []
    resume_search_experiment(exp, again.append, RunOptions())
    assert any("already finished" in line for line in again)
    assert (exp / "report.json").stat().st_mtime_ns == report_mtime


def test_resume_refuses_a_folder_that_is_not_an_experiment(tmp_path):
    (tmp_path / "junk").mkdir()
    result = CliRunner().invoke(main, ["search", "--resume", str(tmp_path / "junk")])
    assert result.exit_code != 0 and "is not an lcp-tune experiment folder" in result.output
    assert "Traceback" not in result.output


def test_resume_refuses_another_runs_settings(tmp_path):
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.store.experiment import open_experiment

    open_experiment(tmp_path / "exp", ExperimentConfig().replace(**{"prune.budget": 0.3}))
    result = CliRunner().invoke(main, ["search", "--resume", str(tmp_path / "exp"), "--budget", "0.5"])
    assert result.exit_code != 0 and "belongs to another run" in result.output
    result = CliRunner().invoke(main, ["search", "--resume", str(tmp_path / "exp"), "--arch", "resnet56"])
    assert result.exit_code != 0 and "arch" in result.output


def _checkpoint_epoch(path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def test_stops_during_the_finetunes_resume_each_from_its_last_epoch(tmp_path, local_ray):
    """SIGKILL during the first fine-tune (lcp), then SIGTERM during the second (global) of the
    --resume that follows: no final artefact after either; each --resume redoes no trial, never
    reruns a finished fine-tune and continues the interrupted one from its last saved epoch."""
    exp, epochs = tmp_path / "exp", 8
    command = [sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--checkpoint",
               trained_base(tmp_path), "--num-samples", "2", "--tau-hat", "4", "--finetune-epochs", str(epochs),
               "--budget", "0.4", "--race", "0", "--out", str(exp)]   # the race's own resume: test_race
    saved = lambda method: list((exp / "finetune").glob(f"{method}-*.pt"))  # noqa: E731
    mid = lambda method: saved(method) and 1 <= _checkpoint_epoch(saved(method)[0]) < epochs - 2  # noqa: E731
    kept_epochs = lambda: {p.name: _checkpoint_epoch(p) for p in (exp / "finetune").glob("*.pt")}  # noqa: E731
    trial_times = lambda: {p.name: p.stat().st_mtime_ns for p in (exp / "trial_cache").glob("*.json")}  # noqa: E731

    def no_final_artefact():
        for final in ("report.json", "compensation.json", "analysis.md", "pruned"):
            assert not (exp / final).exists(), final

    def went_on_from(kept: dict, lines: list[str]) -> None:
        """Each fine-tune in `kept` said where it went on from and ran on, or (finished) never ran."""
        for name, epoch in kept.items():
            ran = [line for line in lines if f"fine-tune {name.split('-')[0]} " in line]
            if epoch < epochs:
                assert ran and f"resuming at epoch {epoch + 1}/{epochs}" in ran[0], (name, ran)
            else:
                assert not ran, (name, ran)

    returncode, _ = stop_when(command, lambda: mid("lcp"), signal.SIGKILL, timeout=900)
    assert returncode == -signal.SIGKILL
    no_final_artefact()
    trials = trial_times()
    assert len(trials) == 2
    first = kept_epochs()
    assert first[saved("lcp")[0].name] < epochs

    resume = [sys.executable, "-m", "lcp_tune.cli", "search", "--resume", str(exp)]
    returncode, output = stop_when(resume, lambda: mid("global"), signal.SIGTERM, timeout=900)
    assert returncode == 143, output
    assert "interrupted by SIGTERM" in output.strip().splitlines()[-1], output
    no_final_artefact()
    assert trial_times() == trials
    went_on_from(first, output.splitlines())
    second = kept_epochs()
    assert second[saved("lcp")[0].name] == epochs and second[saved("global")[0].name] < epochs   # lcp ran to its end

    lines: list[str] = []
    report = resume_search_experiment(exp, lines.append, RunOptions())
    assert report["num_trials"] == 2 and set(report["methods"]) == {"lcp", "global", "uniform"}
    assert trial_times() == trials
    went_on_from(second, lines)
    assert any("fine-tune uniform " in line and f"epoch {epochs}/{epochs}" in line for line in lines)
