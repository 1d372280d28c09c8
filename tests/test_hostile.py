"""Hostile and careless inputs: no code runs from a file, no work is lost, every answer is a line.

Payloads only ever create a marker file, so a failing test shows the marker, never harm.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lcp_tune.errors import LcpTuneError
from lcp_tune.searchers import SearchSpace, make_searcher


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
