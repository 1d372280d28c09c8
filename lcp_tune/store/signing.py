"""Ray Tune's pickled state, trusted only when this machine's lcp-tune key signed it.

`Tuner.restore` unpickles tuner.pkl, the searcher's state and parts of experiment_state; a
folder someone handed you could carry code in any of them. While a search runs, lcp-tune copies
those files into `search/.lcp-signed/` with an HMAC-SHA256 of each, keyed by a secret kept in
the user's config folder (mode 0600) that never leaves the machine. Before anything is
restored or read from them, the live files are checked against the signatures; files newer than
the last signature (a kill between two snapshots) are replaced by the signed copies, and a
folder without valid signatures is refused, its pickles never opened.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Optional

from lcp_tune.errors import LcpTuneError

SNAPSHOT = ".lcp-signed"
MANIFEST = "manifest.json"
# The files Tuner.restore reads (the newest of each kind): the only ones that carry pickles.
KINDS = ("tuner.pkl", "experiment_state-", "searcher-state-", "search_gen_state-")


def key_path() -> Path:
    """$LCP_TUNE_KEY, else ~/.config/lcp-tune/signing.key."""
    if os.environ.get("LCP_TUNE_KEY"):
        return Path(os.environ["LCP_TUNE_KEY"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "lcp-tune" / "signing.key"


def _key() -> bytes:
    path = key_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:   # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def _mac(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _state_files(folder: Path) -> dict[str, Path]:
    """The newest file of each kind in a Tune experiment folder."""
    found: dict[str, Path] = {}
    for kind in KINDS:
        names = sorted(p for p in folder.glob(f"{kind}*") if p.is_file())
        if names:
            found[kind] = names[-1]
    return found


def snapshot(folder: str | Path) -> None:
    """Sign the current state files of the Tune experiment in `folder` (copies + manifest)."""
    folder = Path(folder)
    files = _state_files(folder)
    if not files:
        return
    key, snap = _key(), folder / SNAPSHOT
    snap.mkdir(exist_ok=True)
    manifest = {}
    for path in files.values():
        data = path.read_bytes()
        (snap / path.name).write_bytes(data)
        manifest[path.name] = _mac(data, key)
    for old in snap.iterdir():   # copies of older sessions' files
        if old.name not in manifest and old.name != MANIFEST:
            old.unlink()
    tmp = snap / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, snap / MANIFEST)   # the manifest last: it vouches only for copies already written


def verified(folder: str | Path) -> Optional[str]:
    """Make `folder`'s live state the signed one; None if that worked, else what is wrong.

    Live files that match their signature stay; a newer or edited one is replaced by its signed
    copy, and unsigned state files of the same kinds are removed so Ray cannot pick them.
    """
    folder = Path(folder)
    snap = folder / SNAPSHOT
    try:
        manifest = json.loads((snap / MANIFEST).read_text())
        assert isinstance(manifest, dict) and manifest
    except (OSError, ValueError, AssertionError):
        return "carries no lcp-tune signature"
    key = _key()
    for name, mac in manifest.items():
        if Path(name).name != name or not name.startswith(KINDS):
            return f"has a signature for an unexpected file {name!r}"
        live = folder / name
        if live.is_file() and hmac.compare_digest(_mac(live.read_bytes(), key), str(mac)):
            continue
        copy = snap / name
        if not copy.is_file() or not hmac.compare_digest(_mac(copy.read_bytes(), key), str(mac)):
            return f"is not signed by this machine's lcp-tune key ({name} was written elsewhere or edited)"
        live.write_bytes(copy.read_bytes())
    for kind in KINDS:   # newer, unsigned files of a kind would be read instead of the signed one
        for path in folder.glob(f"{kind}*"):
            if path.is_file() and path.name not in manifest:
                path.unlink()
    return None


def require_verified(folder: str | Path, what: str) -> None:
    """Refuse, in one line, to unpickle an experiment's Tune state that this machine did not sign."""
    problem = verified(folder)
    if problem is not None:
        raise LcpTuneError(f"{what}: Ray Tune's state in {folder} {problem}; its pickles are never opened "
                           f"(resume it on the machine that ran it, or start a new search)")
