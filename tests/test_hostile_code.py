"""Hostile files: no code runs from a file a user hands lcp-tune, and no state is trusted unsigned.

Payloads only ever create a marker file, so a failing test shows the marker, never harm. The
signing key and Ray's token are secrets: whole, private, never shared by a race."""
from __future__ import annotations

from pathlib import Path

import pytest
from hostile_helpers import Payload, payload_bytes, unfinished_copy

from lcp_tune.errors import LcpTuneError
from lcp_tune.searchers import SearchSpace, make_searcher
from lcp_tune.store.signing import SNAPSHOT


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


@pytest.mark.ray
@pytest.mark.slow
def test_search_at_a_uri_is_signed_and_a_payload_there_never_runs(tmp_path, local_ray):
    """--storage file://...: Tune's state is signed where it is stored (through pyarrow's
    filesystem), an edited live copy is replaced by the signed one, and a folder whose signed
    copies carry a payload is refused in one line."""
    from lcp_tune.config import ExperimentConfig
    from lcp_tune.run.search import (
        RunOptions,
        resume_search_experiment,
        run_search_experiment,
    )

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
