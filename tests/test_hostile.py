"""Hostile and careless inputs: no code runs from a file, no work is lost, every answer is a line.

Payloads only ever create a marker file, so a failing test shows the marker, never harm.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lcp_tune.errors import LcpTuneError
from lcp_tune.searchers import SearchSpace, make_searcher
from lcp_tune.store.signing import SNAPSHOT


class Payload:
    """Unpickling this creates `marker`: the proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


@pytest.mark.parametrize("name", ["evolution", "regression"])
def test_own_searcher_state_is_json_and_a_pickle_in_its_place_never_runs(tmp_path, name):
    space = SearchSpace.box(4, 2.0, [[0.0] * 4])
    searcher = make_searcher(name, space, seed=0)
    searcher.suggest("t1")
    path = tmp_path / "searcher-state.pkl"
    searcher.save(str(path))
    import json
    assert json.loads(path.read_text())["class"] in ("RegularizedEvolution", "SurrogateRegression")

    marker = tmp_path / "marker"
    path.write_bytes(payload_bytes(marker))
    with pytest.raises(LcpTuneError, match="not lcp-tune's JSON"):
        make_searcher(name, space, seed=0).restore(str(path))
    assert not marker.exists()


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, local_ray):
    """A finished 3-trial search whose folder the tests below copy and damage."""
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import run_search_experiment

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 3, "search.tau_hat": 4,
        "search.report_every": 2, "search.bn_batches": 1, "base_train.epochs": 1, "finetune.epochs": 1})
    root = tmp_path_factory.mktemp("hostile") / "exp"
    run_search_experiment(config, root, log=lambda line: None)
    return root


def unfinished_copy(finished_search, tmp_path) -> Path:
    import shutil

    folder = Path(shutil.copytree(finished_search, tmp_path / "exp"))
    for name in ("report.json", "compensation.json", "trials.parquet"):
        (folder / name).unlink()
    return folder


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


PAYLOAD_MODULE = """
from pathlib import Path
Path({marker!r}).touch()          # importing this module is the payload

def make(num_classes=10, in_channels=3):
    raise RuntimeError("never called")
"""


@pytest.fixture()
def payload_module(tmp_path, monkeypatch):
    """An importable module whose import creates a marker; its name is unique per test."""
    name = f"lcp_payload_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "marker"
    (tmp_path / f"{name}.py").write_text(PAYLOAD_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:make", marker


def test_plan_json_naming_a_factory_runs_nothing(finished_search, tmp_path, payload_module):
    import json
    import shutil

    import lcp_tune

    spec, marker = payload_module
    pruned = Path(shutil.copytree(finished_search / "pruned", tmp_path / "pruned"))
    meta = json.loads((pruned / "plan.json").read_text())
    (pruned / "plan.json").write_text(json.dumps({**meta, "arch": spec}))
    with pytest.raises(LcpTuneError, match="names code to run.*trust_code=True"):
        lcp_tune.load_pruned(pruned)
    assert not marker.exists()


@pytest.mark.ray
@pytest.mark.slow
def test_config_and_compensation_naming_a_factory_run_nothing(finished_search, tmp_path, payload_module):
    import json

    import yaml
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    spec, marker = payload_module
    folder = unfinished_copy(finished_search, tmp_path)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "arch": spec}))
    result = CliRunner().invoke(main, ["search", "--resume", str(folder)])   # refused as an edit, before any import
    assert_one_line_error(result, "config.yaml was edited after the run started", f"arch is '{spec}'")
    assert not marker.exists()

    comp = json.loads((finished_search / "compensation.json").read_text())
    (tmp_path / "comp.json").write_text(json.dumps({**comp, "arch": spec}))
    result = CliRunner().invoke(main, ["prune", "--compensation", str(tmp_path / "comp.json"), "--budget", "0.5",
                                       "--checkpoint", str(finished_search / "base.pt"),
                                       "--out", str(tmp_path / "out"), "--input-shape", "1", "8", "8"])
    assert_one_line_error(result, "names code to run", f"--arch {spec}")
    assert not marker.exists()


@pytest.mark.ray
@pytest.mark.slow
def test_payload_in_tune_pickles_never_runs_and_an_edited_state_resumes_from_its_signed_copy(
        finished_search, tmp_path):
    """Every pickle Ray Tune wrote (tuner.pkl, the searcher's state, each trial's params.pkl)
    replaced by a payload: the signed copies are restored instead, the search resumes and
    finishes, and the marker never appears."""
    folder = unfinished_copy(finished_search, tmp_path)
    marker = tmp_path / "marker"
    pickles = [p for p in (folder / "search").rglob("*") if p.is_file() and SNAPSHOT not in p.parts
               and p.read_bytes()[:1] == b"\x80"]
    names = {p.name for p in pickles}
    assert {"tuner.pkl", "params.pkl"} <= names and any(n.startswith("searcher-state") for n in names)
    for path in pickles:
        path.write_bytes(payload_bytes(marker))
    from lcp_tune.run.search import RunOptions, resume_search_experiment

    report = resume_search_experiment(folder, lambda line: None, RunOptions())
    assert report["num_trials"] == 3 and not marker.exists()


@pytest.mark.ray
@pytest.mark.slow
def test_payload_in_a_finetune_checkpoint_is_refused_in_one_line(finished_search, tmp_path):
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_ends_in_error_line

    folder = unfinished_copy(finished_search, tmp_path)
    marker = tmp_path / "marker"
    saved = sorted((folder / "finetune").glob("*.pt"))
    assert saved
    saved[0].write_bytes(payload_bytes(marker))
    result = CliRunner().invoke(main, ["search", "--resume", str(folder)])
    assert_ends_in_error_line(result, saved[0].name, "pickled Python objects", "delete it")
    assert not marker.exists() and not (folder / "report.json").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_state_signed_by_another_key_is_never_unpickled(finished_search, tmp_path, monkeypatch):
    """A colleague's folder (another machine's key) with a payload: refused in one line, no marker."""
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    folder = unfinished_copy(finished_search, tmp_path)
    marker = tmp_path / "marker"
    for path in [*(folder / "search").glob("tuner.pkl"), *(folder / "search" / ".lcp-signed").glob("tuner.pkl")]:
        path.write_bytes(payload_bytes(marker))
    monkeypatch.setenv("LCP_TUNE_KEY", str(tmp_path / "other-machine.key"))
    result = CliRunner().invoke(main, ["search", "--resume", str(folder)])
    assert_one_line_error(result, "cannot resume", "not signed by this machine's lcp-tune key")
    assert not marker.exists()
    assert (tmp_path / "other-machine.key").stat().st_mode & 0o777 == 0o600


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


def test_ray_token_is_readable_by_its_owner_only(local_ray):
    import os
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not token.is_file():
        pytest.skip("this Ray wrote no token file")
    assert token.stat().st_mode & 0o077 == 0


def test_ray_starts_under_a_private_umask_and_gives_the_process_its_own_back(monkeypatch):
    """The token Ray writes on its first start is created private, not narrowed seconds later."""
    import os

    import ray

    from lcp_tune.tune import cluster

    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(os.umask(0o077)) or type("C", (), {"dashboard_url": ""})())
    before = os.umask(0o022)
    try:
        cluster.init_ray(num_cpus=1, log=lambda line: None)
        assert seen == [0o077] and os.umask(0o022) == 0o022
    finally:
        os.umask(before)


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


def test_a_pickled_checkpoint_is_refused_saying_why(tmp_path):
    import torch
    from click.testing import CliRunner

    from lcp_tune.cli import main
    from lcp_tune.testing import assert_one_line_error

    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, tmp_path / "evil.pt")
    result = CliRunner().invoke(main, ["search", "--checkpoint", str(tmp_path / "evil.pt"), "--out", str(tmp_path / "x")])
    assert_one_line_error(result, "holds pickled Python objects besides tensors", "never loads")
    assert not marker.exists()


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


@pytest.mark.ray
@pytest.mark.slow
def test_search_at_a_uri_is_signed_and_a_payload_there_never_runs(tmp_path, local_ray):
    """--storage file://...: Tune's state is signed where it is stored (through pyarrow's
    filesystem), an edited live copy is replaced by the signed one, and a folder whose signed
    copies carry a payload is refused in one line."""
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import RunOptions, resume_search_experiment, run_search_experiment

    config = ExperimentConfig().replace(**{
        "arch": "resnet20_tiny", "prune.budget": 0.4, "search.num_samples": 3, "search.tau_hat": 4,
        "search.report_every": 2, "search.bn_batches": 1, "base_train.epochs": 1, "finetune.epochs": 1})
    shared, exp = tmp_path / "shared", tmp_path / "exp"
    run_search_experiment(config, exp, log=lambda s: None, options=RunOptions(storage=shared.as_uri()))
    search = shared / "exp" / "search"
    assert (search / ".lcp-signed" / "manifest.json").is_file()
    assert (search / ".lcp-signed" / "tuner.pkl").read_bytes() == (search / "tuner.pkl").read_bytes()

    def unfinish():
        for name in ("report.json", "compensation.json", "trials.parquet"):
            (exp / name).unlink()

    marker = tmp_path / "marker"
    unfinish()
    (search / "tuner.pkl").write_bytes(payload_bytes(marker))   # the live copy only: the signed one wins
    report = resume_search_experiment(exp, lambda s: None, RunOptions())
    assert report["num_trials"] == 3 and not marker.exists()

    unfinish()
    for path in (search / "tuner.pkl", search / ".lcp-signed" / "tuner.pkl"):
        path.write_bytes(payload_bytes(marker))
    with pytest.raises(LcpTuneError, match="not signed by this machine's lcp-tune key"):
        resume_search_experiment(exp, lambda s: None, RunOptions())
    assert not marker.exists() and not (exp / "report.json").exists()


def test_an_empty_or_short_signing_key_is_refused_never_used(tmp_path, monkeypatch):
    from lcp_tune.store import signing

    key = tmp_path / "signing.key"
    monkeypatch.setenv("LCP_TUNE_KEY", str(key))
    key.write_bytes(b"")   # left by a full disk: HMAC(b"", ...) would let anyone sign
    with pytest.raises(LcpTuneError, match=r"signing key .* holds 0 bytes, fewer than 32"):
        signing._key()
    key.write_bytes(b"x" * 31)
    with pytest.raises(LcpTuneError, match="holds 31 bytes"):
        signing._key()


def test_a_signing_key_on_a_full_disk_is_not_left_behind(tmp_path, monkeypatch):
    import errno
    import os

    from lcp_tune.store import signing

    key = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv("LCP_TUNE_KEY", str(key))

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        with pytest.raises(LcpTuneError, match="cannot create the signing key .*No space left"):
            signing._key()
    assert not key.exists() and list(key.parent.iterdir()) == []   # no short key, no temporary
    assert len(signing._key()) == 32 and key.stat().st_mode & 0o777 == 0o600   # made whole next time


def test_processes_making_the_signing_key_at_once_all_read_the_same_full_key(tmp_path):
    import subprocess
    import sys

    key = tmp_path / "signing.key"
    code = "from lcp_tune.store.signing import _key; print(_key().hex())"
    env = {**__import__("os").environ, "LCP_TUNE_KEY": str(key)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    keys = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == 32
    assert key.read_bytes().hex() and len(key.read_bytes()) == 32


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
