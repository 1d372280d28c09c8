"""Ray Tune's pickled state, trusted only when this machine's lcp-tune key signed it.

`Tuner.restore` unpickles tuner.pkl, the searcher's state and parts of experiment_state; a
folder someone handed you could carry code in any of them. While a search runs, lcp-tune copies
those files into `search/.lcp-signed/` with an HMAC-SHA256 of each, keyed by a secret kept in
the user's config folder (mode 0600) that never leaves the machine. Before anything is
restored or read from them, the live files are checked against the signatures; files newer than
the last signature (a kill between two snapshots) are replaced by the signed copies, and a
folder without valid signatures is refused, its pickles never opened.

The search may live in a local folder or at a pyarrow URI (`--storage s3://...`): every file
operation here goes through pyarrow's filesystem, so both are signed and checked alike.
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


KEY_BYTES = 32


def _key() -> bytes:
    """This machine's signing key: made once, whole or not at all, and refused when short (an
    empty key would sign everything with HMAC(b"", ...), which anyone can forge)."""
    path = key_path()
    if not path.exists():
        _create_key(path)
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise LcpTuneError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    if len(key) < KEY_BYTES:
        raise LcpTuneError(f"signing key {path} holds {len(key)} bytes, fewer than {KEY_BYTES} (cut short, e.g. by "
                           f"a full disk): delete it and lcp-tune makes a new one (searches it signed then cannot "
                           f"be resumed)")
    return key


def _create_key(path: Path) -> None:
    """Write the key to a private temporary file, then link it into place: the key appears with
    its full length or not at all, and of two processes making it at once the first link wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:   # another process made it first: use theirs
            pass
    except OSError as exc:
        raise LcpTuneError(f"cannot create the signing key {path}: {exc.strerror or exc}") from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def _mac(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


class _Folder:
    """One folder, local or at a URI, seen through pyarrow's filesystem."""

    def __init__(self, fs, root: str):
        import pyarrow.fs

        self.fs, self.root = fs, root.rstrip("/") or "/"
        self.local = isinstance(fs, pyarrow.fs.LocalFileSystem)

    @classmethod
    def at(cls, location: str | Path) -> "_Folder":
        import pyarrow.fs

        location = str(location)
        if "://" in location:
            return cls(*pyarrow.fs.FileSystem.from_uri(location))
        return cls(pyarrow.fs.LocalFileSystem(), location)

    def sub(self, name: str) -> "_Folder":
        return _Folder(self.fs, f"{self.root}/{name}")

    def files(self) -> dict:
        """name -> FileInfo of the plain files directly in the folder ({} if there is none)."""
        import pyarrow.fs

        try:
            infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True))
        except OSError:   # not a folder
            return {}
        return {i.base_name: i for i in infos if i.type == pyarrow.fs.FileType.File}

    def read(self, name: str) -> Optional[bytes]:
        try:
            with self.fs.open_input_stream(f"{self.root}/{name}") as f:
                return f.read()
        except OSError:   # missing
            return None

    def write(self, name: str, data: bytes) -> None:
        """Whole or not at all: a local file is renamed into place; an object store's put is atomic."""
        if self.local:
            self.fs.create_dir(self.root, recursive=True)
            tmp = f"{self.root}/.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, f"{self.root}/{name}")
        else:
            with self.fs.open_output_stream(f"{self.root}/{name}") as f:
                f.write(data)

    def delete(self, name: str) -> None:
        self.fs.delete_file(f"{self.root}/{name}")


def _state_files(folder: _Folder) -> dict[str, str]:
    """kind -> the newest file of that kind in a Tune experiment folder."""
    names = sorted(folder.files())
    found: dict[str, str] = {}
    for kind in KINDS:
        of_kind = [n for n in names if n.startswith(kind)]
        if of_kind:
            found[kind] = of_kind[-1]
    return found


def state_stamp(location: str | Path) -> tuple:
    """What identifies the state files' current contents cheaply: names, sizes, mtimes."""
    files = _Folder.at(location).files()
    return tuple(sorted((name, info.size, info.mtime_ns) for name, info in files.items()
                        if name.startswith(KINDS)))


def snapshot(location: str | Path) -> None:
    """Sign the current state files of the Tune experiment at `location` (copies + manifest)."""
    folder = _Folder.at(location)
    names = _state_files(folder).values()
    if not names:
        return
    key, snap = _key(), folder.sub(SNAPSHOT)
    manifest = {}
    for name in names:
        data = folder.read(name)
        if data is None:   # removed by Tune between listing and reading: the next step signs
            continue
        snap.write(name, data)
        manifest[name] = _mac(data, key)
    for old in snap.files():   # copies of older sessions' files
        if old not in manifest and old != MANIFEST:
            snap.delete(old)
    if manifest:
        snap.write(MANIFEST, json.dumps(manifest).encode())   # last: it vouches only for copies written


def verified(location: str | Path) -> Optional[str]:
    """Make the live state at `location` the signed one; None if that worked, else what is wrong.

    Live files that match their signature stay; a newer or edited one is replaced by its signed
    copy, and unsigned state files of the same kinds are removed so Ray cannot pick them.
    """
    folder = _Folder.at(location)
    snap = folder.sub(SNAPSHOT)
    try:
        manifest = json.loads(snap.read(MANIFEST) or b"")
        assert isinstance(manifest, dict) and manifest
    except (ValueError, AssertionError):
        return "carries no lcp-tune signature"
    key = _key()
    for name, mac in manifest.items():
        if not isinstance(name, str) or Path(name).name != name or not name.startswith(KINDS):
            return f"has a signature for an unexpected file {name!r}"
        live = folder.read(name)
        if live is not None and hmac.compare_digest(_mac(live, key), str(mac)):
            continue
        copy = snap.read(name)
        if copy is None or not hmac.compare_digest(_mac(copy, key), str(mac)):
            return f"is not signed by this machine's lcp-tune key ({name} was written elsewhere or edited)"
        folder.write(name, copy)
    for name in folder.files():   # newer, unsigned files of a kind would be read instead of the signed one
        if name.startswith(KINDS) and name not in manifest:
            folder.delete(name)
    return None


def require_verified(location: str | Path, what: str) -> None:
    """Refuse, in one line, to unpickle an experiment's Tune state that this machine did not sign."""
    problem = verified(location)
    if problem is not None:
        raise LcpTuneError(f"{what}: Ray Tune's state in {location} {problem}; its pickles are never opened "
                           f"(resume it on the machine that ran it, or start a new search)")


def sign_json(value: object) -> str:
    """This machine's HMAC of a JSON value (canonical: sorted keys), for records kept beside a
    human-editable file (config.yaml) so an edit can be told from what a run started with."""
    return _mac(json.dumps(value, sort_keys=True).encode(), _key())


def signed_by_us(value: object, mac: str) -> bool:
    return hmac.compare_digest(sign_json(value), str(mac))
