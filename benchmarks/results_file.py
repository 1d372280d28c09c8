"""A benchmark's results file (rows.jsonl): every finished unit appended as one JSON line, read
back so the next sitting skips what is done. A kill loses at most the unit that was running."""
from __future__ import annotations

import json
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    """Every row recorded so far (none when the file is not there yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_rows(path: Path, rows: list[dict]) -> None:
    """Record finished rows, one line each, flushed before the next unit starts."""
    with Path(path).open("a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
