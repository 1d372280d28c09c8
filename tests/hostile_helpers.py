"""What the hostile-input tests share: a pickle payload that only touches a marker file, an
importable payload module, and an unfinished copy of a finished search."""
from __future__ import annotations

import pickle
from pathlib import Path


class Payload:
    """Unpickling this creates `marker`: the proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def unfinished_copy(finished_search, tmp_path) -> Path:
    import shutil

    folder = Path(shutil.copytree(finished_search, tmp_path / "exp"))
    for name in ("report.json", "compensation.json", "trials.parquet"):
        (folder / name).unlink()
    return folder


PAYLOAD_MODULE = """
from pathlib import Path
Path({marker!r}).touch()          # importing this module is the payload

def make(num_classes=10, in_channels=3):
    raise RuntimeError("never called")
"""
