"""Content-addressed record of finished candidate evaluations: a finished trial is never redone.

Ray Tune snapshots its experiment state only every few seconds, so after a kill -9 a trial
that finished just before may be rerun on restore (and a deterministic searcher re-suggests
the same vector). Each finished evaluation is written here, keyed by its compensation vector
and the settings that define the objective; a rerun replays the recorded reports instantly.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

from lcp_tune.store.files import atomic_write


class TrialCache:
    def __init__(self, folder: str | Path, salt: str):
        self.folder = Path(folder)
        self.salt = salt

    def key(self, vector: np.ndarray) -> str:
        rounded = np.round(np.asarray(vector, dtype=float), 12).tolist()
        return hashlib.sha256(json.dumps([self.salt, rounded]).encode()).hexdigest()[:24]

    def get(self, vector: np.ndarray) -> Optional[list[dict]]:
        path = self.folder / f"{self.key(vector)}.json"
        try:
            return json.loads(path.read_text())["reports"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, vector: np.ndarray, reports: list[dict]) -> None:
        atomic_write(self.folder / f"{self.key(vector)}.json",
                     json.dumps({"vector": np.asarray(vector, dtype=float).tolist(), "reports": reports}))
