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


def test_sigkill_then_resume_keeps_finished_trials(tmp_path, local_ray):
    exp = tmp_path / "exp"
    cache = exp / "trial_cache"
    stop_when(search_command(exp, trained_base(tmp_path)),
              lambda: cache.is_dir() and len(list(cache.glob("*.json"))) >= 3, signal.SIGKILL, 240)
    finished = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert 3 <= len(finished) < SAMPLES
    assert not (exp / "report.json").exists()

    lines: list[str] = []
    report = resume_search_experiment(exp, lines.append, RunOptions())
    assert report["num_trials"] == SAMPLES
    assert any("resuming the search" in line for line in lines)
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    for name, mtime in finished.items():      # evaluated before the kill: never evaluated again
        assert after[name] == mtime
    assert len(after) >= SAMPLES - 1          # the rest were evaluated once each
    trials = pd.read_parquet(exp / "trials.parquet")   # the search's own record of its trials
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


def test_a_signal_is_an_interruption_never_a_finished_run(tmp_path, local_ray):
    """Ctrl-C mid-search: one line, exit 130, no final artefact, and --resume continues with every
    finished trial kept. (SIGTERM goes through the same handler: the fine-tune test sends it.)"""
    signum, status = signal.SIGINT, 130
    exp = tmp_path / "exp"
    cache = exp / "trial_cache"
    returncode, output = stop_when(search_command(exp, trained_base(tmp_path)),
                                   lambda: cache.is_dir() and len(list(cache.glob("*.json"))) >= 2, signum, 240)
    assert returncode == status, output
    last = output.strip().splitlines()[-1]
    assert f"interrupted by {signal.Signals(signum).name}" in last and "--resume" in last, output
    for final in ("report.json", "compensation.json", "pruned", "analysis.md"):
        assert not (exp / final).exists(), final
    finished = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    report = resume_search_experiment(exp, lambda line: None, RunOptions())
    assert report["num_trials"] == SAMPLES and report["failed_trials"] == 0
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert all(after[name] == mtime for name, mtime in finished.items())   # never evaluated again


def _checkpoint_epoch(path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


@pytest.mark.parametrize("signum, status, method", [
    (signal.SIGTERM, 143, "global"), (signal.SIGKILL, -signal.SIGKILL, "lcp")],
    ids=["SIGTERM-second-finetune", "SIGKILL-first-finetune"])   # SIGINT: the mid-search test
def test_a_signal_during_finetune_resumes_from_its_last_epoch(tmp_path, local_ray, signum, status, method):
    """Stopped while a method is being fine-tuned: no final artefact; --resume redoes no trial,
    keeps the finished fine-tunes and continues the interrupted one from its last saved epoch."""
    exp, epochs = tmp_path / "exp", 8
    command = [sys.executable, "-m", "lcp_tune.cli", "search", "--arch", "resnet20_tiny", "--checkpoint",
               trained_base(tmp_path), "--num-samples", "2", "--tau-hat", "4", "--finetune-epochs", str(epochs),
               "--budget", "0.4", "--out", str(exp)]
    saved = lambda: list((exp / "finetune").glob(f"{method}-*.pt"))  # noqa: E731
    returncode, output = stop_when(command, lambda: saved() and 1 <= _checkpoint_epoch(saved()[0]) < epochs - 2,
                                   signum, timeout=900)
    assert returncode == status, output
    if signum != signal.SIGKILL:
        assert f"interrupted by {signal.Signals(signum).name}" in output.strip().splitlines()[-1], output
    for final in ("report.json", "compensation.json", "analysis.md", "pruned"):
        assert not (exp / final).exists(), final
    trials = {p.name: p.stat().st_mtime_ns for p in (exp / "trial_cache").glob("*.json")}
    assert len(trials) == 2
    kept = {p.name: _checkpoint_epoch(p) for p in (exp / "finetune").glob("*.pt")}
    assert kept[saved()[0].name] < epochs

    lines: list[str] = []
    report = resume_search_experiment(exp, lines.append, RunOptions())
    assert report["num_trials"] == 2 and set(report["methods"]) == {"lcp", "global", "uniform"}
    assert {p.name: p.stat().st_mtime_ns for p in (exp / "trial_cache").glob("*.json")} == trials
    for name, epoch in kept.items():   # each fine-tune went on from its last epoch, never from the start
        label = name.split("-")[0]
        ran = [line for line in lines if f"fine-tune {label} " in line]
        if epoch < epochs:   # it says where it goes on from, then runs to the end
            assert f"resuming at epoch {epoch + 1}/{epochs}" in ran[0] and f"epoch {epochs}/{epochs}" in ran[-1], ran
        else:
            assert not ran, (name, ran)
