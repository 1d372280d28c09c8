"""Atomic file writes and JSON: a crash at any moment leaves the old file or the new one.

Every file lcp-tune writes goes through `atomic_write`: a uniquely named temporary file in the
same folder (so two processes never share one), fsync, then rename over the target.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lcp_tune.errors import LcpTuneError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    check_no_link_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_no_link_out(path: str | Path) -> None:
    """Refuse a write through a symbolic link inside an experiment folder (a copied folder whose
    `plots/` or `export/` links elsewhere would have its files written there). The folders from
    `path` up to the experiment's root (the first holding config.yaml) must be real folders; a
    link to the target file itself is replaced by the rename, never followed. Paths outside any
    experiment are not checked: where a user keeps their folders is theirs."""
    path = Path(os.path.abspath(path))
    chain = []
    for folder in path.parents:
        if (folder / "config.yaml").is_file() and not folder.is_symlink():
            for link in chain:
                if link.is_symlink():
                    raise LcpTuneError(f"{link} is a symbolic link inside the experiment folder {folder}; lcp-tune "
                                       f"writes only inside the folder: replace the link with a real folder")
            return
        chain.append(folder)
        if len(chain) > 8:
            return


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write text or bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically; NaN / inf become null so any JSON reader accepts the file."""
    atomic_write(path, json.dumps(_clean(data), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LcpTuneError(f"{path} is not a readable JSON file ({exc})") from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value
