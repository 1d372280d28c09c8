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
    """Our methods and a Torch-Pruning peer from one base model: every method under its budget,
    ours within 0.005 of it, and the learned compensation never worse on its own objective."""
    out = tmp_path / "table"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    df = pd.read_parquet(out / "paper_table.parquet")
    assert set(df.method) == {"lcp", "global", "uniform", "eagleeye", "tp-global"}
    assert (df.flops_ratio <= 0.3 + 1e-9).all()
    ours = df[~df.method.str.startswith("tp-")]
    assert (ours.flops_ratio >= 0.3 - 0.005).all(), ours[["method", "flops_ratio"]]
    lcp, uniform, glob = (df[df.method == m].iloc[0] for m in ("lcp", "uniform", "global"))
    assert lcp.search_objective <= min(uniform.search_objective, glob.search_objective) + 1e-6
    assert df[df.method == "eagleeye"].iloc[0].trials == 4
    table = (out / "paper_table.md").read_text()
    assert "| 0.3 | lcp |" in table and "| 0.3 | tp-global |" in table and "wins" in table
    assert "Target (lcp ahead of" in table and "| learned (lcp) |" in table
    assert len(list((out / "cache" / "base").glob("*seed0-*.pt"))) == 1   # the base model kept with the rows

    # a second sitting redoes nothing: every (seed, budget, unit) is in rows.jsonl already
    rows = (out / "rows.jsonl").read_text()
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--smoke", "--out", str(out)],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert again.returncode == 0 and (out / "rows.jsonl").read_text() == rows
    assert "budget 0.3 lcp (" not in again.stdout

    # a probe in another folder starts from the table's base model (--bases), keeping none of its own
    probe = tmp_path / "probe"
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--smoke", "--units", "tp-global",
                            "--out", str(probe), "--bases", str(out / "cache")],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (probe / "cache").exists()
    assert pd.read_parquet(probe / "paper_table.parquet").base_test_acc.iloc[0] == df.base_test_acc.iloc[0]


def test_objective_table_ranks_and_picks_by_each_objective():
    """bench_objective's table: Spearman's rho against the fine-tuned accuracy (losses and
    accuracies both counted the right way round) and what each objective's pick scores."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_objective import table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = []
    for i, name in enumerate(["uniform", "global", "u0.25-0", "u0.5-0"]):
        acc = [0.85, 0.70, 0.86, 0.80][i]
        rows.append({"seed": 0, "budget": 0.3, "candidate": name, "test_acc": acc,
                     "loss good": 1.0 - acc,           # agrees with the ranking: rho +1
                     "acc good": acc / 2,              # an accuracy, higher is better: rho +1
                     "loss bad": acc})                 # exactly reversed: rho -1, picks global
    text = table(pd.DataFrame(rows))
    assert "| loss good | +1.00, +1.00 (u0.25-0) | +1.00 |" in text
    assert "| acc good | +1.00, +1.00 (u0.25-0) | +1.00 |" in text
    assert "| loss bad | -1.00, -15.00 (global) | -1.00 |" in text
    assert "uniform 85.00%, best 86.00% (u0.25-0), global 70.00%" in text


def test_pick_margin_keeps_uniform_unless_the_best_beats_it_by_the_margin(tmp_path):
    """pick_margin.py: the rule takes the best candidate only when its objective is lower than
    uniform's by more than the margin, from both sources of rows (candidate sets, searches)."""
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from pick_margin import OBJECTIVE, candidate_sets, gain, table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    (tmp_path / "objective_fidelity_b0.3").mkdir()
    (tmp_path / "objective_fidelity_b0.3" / "rows.jsonl").write_text("".join(
        json.dumps({"seed": 0, "budget": 0.3, "candidate": c, "test_acc": a, OBJECTIVE: o}) + "\n"
        for c, a, o in [("uniform", 0.85, 0.50), ("u0.25-0", 0.84, 0.45), ("global", 0.70, 1.2)]))
    (tmp_path / "paper_table_fashion-mnist_x").mkdir()
    (tmp_path / "paper_table_fashion-mnist_x" / "rows.jsonl").write_text("".join(
        json.dumps({"seed": 1, "budget": 0.15, "method": m, "test_acc": a, "search_objective": o}) + "\n"
        for m, a, o in [("lcp", 0.80, 0.6), ("uniform", 0.78, 1.2), ("global", 0.6, 1.5)]))
    sets = candidate_sets(tmp_path)
    assert set(sets) == {("candidates", 0, 0.3), ("search", 1, 0.15)}
    assert gain(*sets[("candidates", 0, 0.3)], 0.05) == pytest.approx(-1.0)   # 10% lower: taken, loses a point
    assert gain(*sets[("candidates", 0, 0.3)], 0.15) == 0.0                  # not by 15%: uniform kept
    assert gain(*sets[("search", 1, 0.15)], 0.3) == pytest.approx(2.0)       # 50% lower: taken
    assert "| 5% | -1.00, +2.00 | +0.50 |" in table(sets)


def test_allocations_reads_widths_and_names_the_channels_a_pruned_network_kept():
    """allocations.py: kept shares per stage and inner/outer from conv widths, and the base
    channels a pruned BatchNorm holds, found from its running statistics alone."""
    import copy

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from allocations import conv_widths, kept_channels, merged, same_channels, shares
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    base = {"conv1": 8, "layer1.0.conv1": 8, "layer1.0.conv2": 8, "layer2.0.conv1": 16, "layer2.0.conv2": 16}
    kept = {"conv1": 4, "layer1.0.conv1": 2, "layer1.0.conv2": 8, "layer2.0.conv1": 4, "layer2.0.conv2": 12, "fc": 3}
    got = shares(kept, base)
    assert got == pytest.approx({"stem": 0.5, "stage1": 10 / 16, "stage2": 16 / 32, "inner": 6 / 24, "outer": 20 / 24})
    state = {"a.weight": torch.zeros(5, 3, 3, 3), "a.bias": torch.zeros(5), "fc.weight": torch.zeros(10, 5)}
    assert conv_widths(state) == {"a": 5}

    torch.manual_seed(0)
    ref = torch.nn.BatchNorm2d(8)
    ref.running_mean, ref.running_var = torch.randn(8), torch.rand(8) + 0.5
    def pruned(rows):
        bn = torch.nn.BatchNorm2d(len(rows))
        bn.running_mean, bn.running_var = ref.running_mean[rows].clone(), ref.running_var[rows].clone()
        return bn
    assert kept_channels(pruned([6, 1, 3]), ref) == {1, 3, 6}
    net = lambda *bns: torch.nn.Sequential(*bns)  # noqa: E731
    assert same_channels(net(pruned([1, 3]), pruned([0, 2, 4])), net(pruned([3, 1]), pruned([0, 2, 5])),
                         net(ref, copy.deepcopy(ref))) == (2, 2, 1)   # equal widths in both; the same set in the first
    assert same_channels(net(pruned([1, 3])), net(pruned([1, 3, 4])), net(ref)) == (1, 0, 0)

    # a sitting that sees only seed 2's folders keeps the rows of seeds 0-1 and replaces seed 2's
    old = [{"seed": 0, "budget": 0.3, "method": "lcp", "inner": 0.5}, {"seed": 2, "budget": 0.3, "method": "lcp", "inner": 0.1}]
    new = [{"seed": 2, "budget": 0.3, "method": "lcp", "inner": 0.4}, {"seed": 2, "budget": 0.5, "method": "uniform", "inner": 0.7}]
    assert merged(old, new, ("seed", "budget", "method")) == [old[0], new[1], new[0]]


def test_gpu_check_runs_as_written_at_its_smoke_size_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --smoke --device cpu: every row of the GPU table comes out of a
    real run (none failed), each a positive number; --device cuda without a GPU is one line."""
    import json

    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--device", "cpu"],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rows["device"] == "cpu"
    failed = {k: v for k, v in rows.items() if str(v).startswith("failed")}
    assert not failed, failed
    numbers = {k: float(v) for k, v in rows.items() if k not in ("device", "torch")}
    assert len(numbers) == 12 and all(v > 0 for v in numbers.values()), numbers
    assert 0 < numbers["  pruned test accuracy"] <= 1
    assert (tmp_path / "gpu_check.md").read_text().startswith("| what | value |")

    import torch
    if not torch.cuda.is_available():
        refused = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cuda"],
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "--device cuda" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_data_path_benchmark_smoke(tmp_path):
    """benchmarks/bench_data_path.py --smoke: generated JPEGs, both modes, every phase of every
    trial in results.json, and the shared mode's subsets decoded once."""
    import json

    out = tmp_path / "data_path"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data_path.py"), "--smoke",
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((out / "jpegs" / "train").rglob("*.JPEG"))) == 60
    results = json.loads((out / "results.json").read_text())
    assert set(results["modes"]) == {"per-trial decoding", "shared"}
    for entry in results["modes"].values():
        assert len(entry["trials"]) == 2
        for trial in entry["trials"]:
            assert trial["data"] <= trial["bn"] + trial["steps"] + trial["val"] <= trial["wall"] + 1e-3
    assert results["modes"]["per-trial decoding"]["decode_once_s"] < results["modes"]["shared"]["decode_once_s"]
    assert "decoded 25 images" in result.stdout and "| shared |" in result.stdout


def test_latency_benchmark_smoke(tmp_path):
    """benchmarks/bench_latency.py --smoke: a real latency model timed on this CPU, an unreachable
    budget named with the smallest reachable fraction, a pruned network timed against its base,
    and a second sitting that redoes nothing."""
    import json

    out = tmp_path / "latency"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_latency.py"), "--smoke", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["budget"] for r in rows] == [0.1, 0.95]
    assert "smallest reachable" in rows[0]["unreachable"]
    timed = rows[1]
    assert 0.94 <= timed["predicted"] <= 0.95 and timed["latency_ms"] > 0 and timed["base_latency_ms"] > 0
    assert "| resnet20_tiny 16 px | 1 |" in (out / "latency_table.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert again.returncode == 0 and "measuring latency" not in again.stdout


def test_latency_search_compares_each_latency_network_with_the_flops_front_at_equal_latency():
    """bench_latency_search's comparison: the FLOPs front's accuracy interpolated at the latency
    network's measured latency and its latency at that network's FLOPs; nothing extrapolated,
    an unreachable budget listed as such."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_latency_search import compare, table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = [{"seed": 0, "resource": "flops", "budget": b, "folder": f"f{b}", "test_acc": acc, "flops_ratio": b}
            for b, acc in ((0.2, 0.80), (0.5, 0.90))]
    rows += [{"seed": 0, "resource": "latency", "budget": 0.8, "folder": "l0.8", "test_acc": 0.88, "flops_ratio": 0.3,
              "predicted_latency_ratio": 0.8},
             {"seed": 0, "resource": "latency", "budget": 0.6, "folder": "l0.6", "test_acc": 0.7, "flops_ratio": 0.1},
             {"seed": 0, "resource": "latency", "budget": 0.5, "folder": "l0.5",
              "unreachable": "budget 0.5 of the base latency is unreachable: the smallest reachable is 0.5500"}]
    measured = {"f0.2": 0.7, "f0.5": 0.9, "l0.8": 0.8, "l0.6": 0.6}
    measured = {k: {"measured_latency_ratio": v} for k, v in measured.items()}
    measured["f0.5"]["passes"] = [0.85, 0.9, 0.95]                           # the median and the passes' range
    by_budget = {c["budget"]: c for c in compare(rows, measured)}
    assert set(by_budget) == {0.8, 0.6}
    assert by_budget[0.8]["front_acc"] == pytest.approx(0.85)                # half way between 0.80 and 0.90
    assert by_budget[0.8]["front_latency_at_flops"] == pytest.approx(0.7 + 0.2 / 3)
    assert by_budget[0.6]["front_acc"] is None and by_budget[0.6]["front_latency_at_flops"] is None
    text = table(rows, measured)
    assert "| 0 | 0.8 | 0.800 | 88.00 | 85.00 | +3.00 | 0.300 | 0.767 |" in text
    assert "unreachable: smallest 0.5500" in text
    assert "| 0 | flops | 0.5 | 90.00 | 0.500 | - | 0.900 (0.850-0.950) |" in text


def test_paper_table_verdict_and_headline_read_the_paired_differences():
    """Item 5's target is met at a budget only when lcp leads every target by more than the std of
    the per-seed differences; the README table shows mean ± std and lcp's paired lead."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from paper_table import complete_seeds, headline, label, verdict
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    acc = {  # budget -> method -> test accuracy per seed 0, 1, 2
        0.5: {"lcp": [0.90, 0.91, 0.92], "uniform": [0.89, 0.90, 0.91], "global": [0.80, 0.82, 0.81],
              "tp-global": [0.88, 0.90, 0.90]},
        0.3: {"lcp": [0.88, 0.88, 0.88], "uniform": [0.87, 0.89, 0.86], "global": [0.70, 0.71, 0.72],
              "tp-global": [0.87, 0.87, 0.87]},
        0.15: {"lcp": [0.85, 0.86, 0.84], "uniform": [0.86, 0.87, 0.85], "global": [0.60, 0.61, 0.62],
               "tp-global": [0.84, 0.85, 0.83]},
    }
    df = pd.DataFrame([{"seed": s, "budget": b, "method": m, "test_acc": a}
                       for b, by_method in acc.items() for m, accs in by_method.items() for s, a in enumerate(accs)])
    text = verdict(df)
    # 0.5: +1.00 ± 0 over uniform, +10 over global, +1.67 ± 0.58 over TP: all three beaten
    # 0.3: +0.67 ± 1.53 over uniform: not beaten (a rule without the spread would count it); 0.15: behind
    assert text.splitlines()[0].endswith("not met, at 1 of 3.")
    assert "- budget 0.5: ahead of uniform, global, tp-global\n" in text
    assert "- budget 0.3: ahead of global, tp-global; not of uniform" in text
    df.loc[(df.budget == 0.3) & (df.method == "uniform"), "test_acc"] = [0.87, 0.87, 0.865]
    assert verdict(df).splitlines()[0].endswith("): met, at 2 of 3.")
    table = headline(df)
    assert "| learned (lcp) | 91.00 ± 1.00 | 88.00 ± 0.00 | 85.00 ± 1.00 |" in table
    assert "| uniform | 90.00 ± 1.00 (+1.00, 3/3) |" in table and "(-1.00, 0/3) |" in table
    # a seed still running is left out of the headline until every unit of it is done
    partial = pd.concat([df, pd.DataFrame([{"seed": 3, "budget": 0.5, "method": "lcp", "test_acc": 0.5}])])
    assert complete_seeds(partial) == [0, 1, 2] and headline(partial) == table
    # rows are named by unit for a search's pick, by allocation otherwise (a probe's --set method=uniform)
    assert [label("legr", "lcp", "lcp"), label("eagleeye", "random", "random"), label("lcp", "global", "lcp"),
            label("lcp", "uniform", "uniform")] == ["legr", "eagleeye", "global", "uniform"]


def test_readme_headline_is_the_fashion_mnist_table_of_the_committed_rows():
    """README's headline table is what paper_table.py makes of the committed rows.jsonl."""
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from paper_table import headline
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = ROOT / "benchmarks" / "results" / "paper_table_fashion-mnist_resnet20_narrow" / "rows.jsonl"
    df = pd.DataFrame([json.loads(line) for line in rows.read_text().splitlines() if line.strip()])
    readme = (ROOT / "README.md").read_text()
    table = [line for line in headline(df).splitlines() if line.startswith("|")]
    assert len(table) == 9 and "\n".join(table) in readme
