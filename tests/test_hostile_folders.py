"""Hostile folders: one writer at a time, no work lost or mixed, no write outside the experiment."""
from __future__ import annotations

from pathlib import Path

import pytest
from hostile_helpers import unfinished_copy

from lcp_tune.errors import LcpTuneError


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_damaged_tune_state_stops_resume_in_one_line(finished_search, tmp_path, damage):
    """Live state and its signed copy both damaged: nothing to restore, so no resume at all."""
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    folder = unfinished_copy(finished_search, tmp_path)
    for state in [*(folder / "search").glob("experiment_state-*.json"),
                  *(folder / "search" / ".lcp-signed").glob("experiment_state-*.json")]:
        if damage == "truncated":
            state.write_text(state.read_text()[:200])
        else:
            state.unlink()
    trials_before = sorted(p.name for p in (folder / "search").glob("trial_*"))
    result = CliRunner().invoke(main, ["search", "--resume", str(folder)])
    assert_one_line_error(result, "cannot resume", "experiment_state")
    assert sorted(p.name for p in (folder / "search").glob("trial_*")) == trials_before   # no new search
    assert not (folder / "report.json").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_reusing_out_with_other_settings_names_the_setting(finished_search, tmp_path):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    folder = unfinished_copy(finished_search, tmp_path)
    result = CliRunner().invoke(main, ["search", "--arch", "resnet20_tiny", "--budget", "0.4", "--num-samples", "3",
                                       "--tau-hat", "5", "--out", str(folder)])
    assert_one_line_error(result, "belongs to another run", "search.tau_hat = 4", "asked 5")
    assert not (folder / "report.json").exists()


def test_out_that_is_a_file_and_resume_of_a_missing_folder(tmp_path):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(main, ["search", "--out", str(tmp_path / "afile")])
    assert_one_line_error(result, "is a file, not a folder")
    result = CliRunner().invoke(main, ["search", "--resume", str(tmp_path / "gone")])
    assert_one_line_error(result, "--resume", "no such experiment folder")


@pytest.mark.ray
@pytest.mark.slow
def test_a_moved_experiment_resumes_analyses_and_exports_where_it_now_is(finished_search, tmp_path):
    """Every path inside an experiment is relative to it: moved, it works in its new place and
    writes nothing where it used to be."""
    import shutil

    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.run.search import RunOptions, resume_search_experiment

    before = unfinished_copy(finished_search, tmp_path)                 # tmp_path/exp
    moved = Path(shutil.move(str(before), str(tmp_path / "elsewhere" / "exp")))
    report = resume_search_experiment(moved, lambda line: None, RunOptions())
    assert report["num_trials"] == 3 and (moved / "report.json").is_file()
    for args in (["analyze", str(moved)], ["export", str(moved), "--format", "state-dict"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert not before.exists()                                          # nothing written where it was
    assert (moved / "analysis.md").is_file() and (moved / "export" / "state-dict" / "plan.json").is_file()
    assert str(before) not in (moved / "report.json").read_text() + (moved / "run.json").read_text()


def test_analyze_an_experiment_whose_search_never_started(tmp_path):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.store.experiment import open_experiment
    from lcp_tune.testing import assert_one_line_error

    open_experiment(tmp_path / "exp", ExperimentConfig())   # killed before the search started
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "exp")])
    assert_one_line_error(result, "has no finished trial")
    assert (tmp_path / "exp" / "analysis.md").is_file()


HOLD = """
import sys, time
from lcp_tune.store.lock import experiment_lock
with experiment_lock(sys.argv[1], "search"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(folder: Path):
    """A second process holding `folder`'s lock, as a running search does."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(tmp_path):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.store.lock import experiment_lock
    from lcp_tune.testing import assert_one_line_error

    folder = tmp_path / "exp"
    holder = hold_lock(folder)
    try:
        result = CliRunner().invoke(main, ["search", "--out", str(folder)])
        assert_one_line_error(result, f"experiment folder {folder} is in use by `lcp-tune search`",
                              f"pid {holder.pid}")
        assert sorted(p.name for p in folder.iterdir()) == [".lcp-lock"]   # nothing written, no base trained
        result = CliRunner().invoke(main, ["finetune", str(folder), "--budgets", "0.3"])
        assert result.exit_code != 0 and "Traceback" not in result.output
    finally:
        holder.kill()   # as kill -9: the kernel drops its lock
        holder.wait()
    with experiment_lock(folder, "finetune"):
        with experiment_lock(folder, "finetune"):   # re-entrant in one process (search, then its budgets)
            pass


@pytest.mark.ray
@pytest.mark.slow
def test_analyze_never_writes_into_a_source_or_another_experiment(finished_search, tmp_path):
    import shutil

    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(finished_search, a)
    shutil.copytree(finished_search, b)
    before = (a / "trials.parquet").read_bytes()
    result = CliRunner().invoke(main, ["analyze", str(a), str(b), "--out", str(a)])
    assert_one_line_error(result, f"--out {a} is one of the experiments compared")
    result = CliRunner().invoke(main, ["analyze", str(b), "--out", str(a)])
    assert_one_line_error(result, f"--out {a} is another experiment's folder")
    assert (a / "trials.parquet").read_bytes() == before
    result = CliRunner().invoke(main, ["analyze", str(a), str(b), "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["analyze", str(a)])   # an experiment's own analysis, in place
    assert result.exit_code == 0, result.output


@pytest.mark.ray
@pytest.mark.slow
def test_resume_refuses_a_hand_edited_config_naming_the_setting(finished_search, tmp_path):
    import shutil

    import yaml

    from lcp_tune.run.search import RunOptions, resume_search_experiment

    exp = tmp_path / "exp"
    shutil.copytree(finished_search, exp)
    (exp / "report.json").unlink()
    original = (exp / "config.yaml").read_text()
    config = yaml.safe_load(original)
    config["prune"]["budget"] = 0.3   # by hand: the trials already run are at 0.4
    (exp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(LcpTuneError, match=r"config.yaml was edited after the run started: prune.budget is 0.3, "
                                           r"the run started with 0.4"):
        resume_search_experiment(exp, lambda s: None, RunOptions())
    config["prune"]["budget"] = 0.4
    config["data_dir"] = str(tmp_path)   # where the data is may change (a moved folder)
    (exp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    signed = exp / ".lcp-config.json"
    record = signed.read_text()
    signed.write_text(record.replace('"budget": 0.4', '"budget": 0.3'))   # the record edited too
    with pytest.raises(LcpTuneError, match="is not signed by this machine's lcp-tune key"):
        resume_search_experiment(exp, lambda s: None, RunOptions())
    signed.write_text(record)
    (exp / "config.yaml").write_text(original)
    report = resume_search_experiment(exp, lambda s: None, RunOptions())   # as it was: resumes
    assert report["num_trials"] == 3


@pytest.mark.ray
@pytest.mark.slow
def test_a_symlink_inside_the_experiment_is_never_written_through(finished_search, tmp_path):
    import shutil

    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_ends_in_error_line, assert_one_line_error

    exp, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    shutil.copytree(finished_search, exp)
    elsewhere.mkdir()
    shutil.rmtree(exp / "plots")
    (exp / "plots").symlink_to(elsewhere, target_is_directory=True)
    result = CliRunner().invoke(main, ["analyze", str(exp)])
    assert_one_line_error(result, f"{exp / 'plots'} is a symbolic link inside the experiment folder")
    (exp / "export").symlink_to(elsewhere, target_is_directory=True)
    result = CliRunner().invoke(main, ["export", str(exp), "--format", "state-dict"])
    assert_ends_in_error_line(result, f"{exp / 'export'} is a symbolic link")
    assert list(elsewhere.iterdir()) == []
