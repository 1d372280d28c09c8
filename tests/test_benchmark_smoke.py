"""The paper-table benchmark at its smoke size: every method's row comes out of real runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def test_paper_table_smoke(tmp_path):
    out = tmp_path / "table"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    df = pd.read_parquet(out / "paper_table.parquet")
    assert set(df.method) == {"lcp", "global", "uniform", "random"}
    assert (df.flops_ratio <= 0.3 + 1e-9).all()
    lcp, uniform, glob = (df[df.method == m].iloc[0] for m in ("lcp", "uniform", "global"))
    # the learned compensation starts from both baselines: never worse on its own objective
    assert lcp.search_objective <= min(uniform.search_objective, glob.search_objective) + 1e-6
    table = (out / "paper_table.md").read_text()
    assert "| 0.3 | lcp |" in table and "| 0.3 | random |" in table
