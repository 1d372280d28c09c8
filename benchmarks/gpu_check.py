"""The GPU check (issue 14, 7c): one table of what lcp-tune does on a GPU, in under 8 minutes.

    bash benchmarks/gpu_check.sh                     # on a machine with a CUDA GPU
    bash benchmarks/gpu_check.sh --smoke --device cpu   # the tests' run: same code, tiny sizes

Rows:
1. the default search (`lcp-tune search`, digits) end to end on the device;
2. ResNet-56 at 32x32: search throughput (trials per minute) at --gpus-per-trial 1, 0.5, 0.25;
3. ResNet-50 at 224x224: one trial's phases (plan, surgery, BN recalibration, 100 SGD steps,
   validation), on generated images (no dataset needed);
4. a fine-tune step of ResNet-50 at 224 with bf16 autocast + channels_last against fp32 + NCHW.

No dataset or weights are downloaded: rows 1-2 use digits (scikit-learn), rows 3-4 random
tensors. Every row is timed on its own; a row that fails prints its one-line error and the
table goes on. With $OUT set, the table is also written to $OUT/gpu_check.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, device: torch.device) -> float:
    """Seconds `fn()` takes, with the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def default_search(args, work: Path) -> list[tuple[str, str]]:
    """`lcp-tune search` on its default task, on the device, end to end (a subprocess, as users run it)."""
    gpus = "0" if args.device == "cpu" else "0.25"
    command = [sys.executable, "-m", "lcp_tune.cli", "search", "--device", args.device, "--gpus-per-trial", gpus,
               "--quiet", "--out", str(work / "default")]
    if args.smoke:   # a 1-epoch base instead of the default's 30
        base = work / "tiny_base.pt"
        subprocess.run([sys.executable, "-m", "lcp_tune.cli", "train", "--arch", "resnet20_tiny", "--epochs", "1",
                        "--device", args.device, "--out", str(base)], capture_output=True, check=True)
        command += ["--arch", "resnet20_tiny", "--checkpoint", str(base), "--num-samples", "2", "--tau-hat", "5",
                    "--finetune-epochs", "1", "--no-baselines"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError((result.stdout + result.stderr).strip().splitlines()[-1])
    report = json.loads((work / "default" / "report.json").read_text())
    return [("default search end to end (s)", f"{wall:.0f}"),
            ("  of which search (s)", f"{report['search_wall_time_s']:.0f}"),
            ("  pruned test accuracy", f"{report['pruned_test_acc']:.4f}")]


def search_throughput(args, work: Path) -> list[tuple[str, str]]:
    """Trials per minute of a ResNet-56 search at 32x32 for each GPU share per trial."""
    from lcp_tune.run.search import RunOptions, run_search_experiment
    from lcp_tune.run.settings import resolve_config

    arch, trials, per_class = ("resnet20_tiny", 2, 10) if args.smoke else ("resnet56", 24, 500)
    shares = [0.0] if args.device == "cpu" else [1.0, 0.5, 0.25]
    folder = write_cifar10(work / "cifar", per_class)
    rows = []
    for share in shares:
        config = resolve_config({"arch": arch, "data": "cifar10", "data_dir": str(folder), "device": args.device,
                                 "seed": 0, "recipe": "cifar",
                                 "base_train.epochs": 1, "finetune.epochs": 1, "baselines": False,
                                 "search.num_samples": trials, "search.gpus_per_trial": share,
                                 "search.tau_hat": 100 if not args.smoke else 5})
        report = run_search_experiment(config, work / f"r56-{share:g}", log=lambda line: None,
                                       options=RunOptions(quiet=True))
        per_minute = report["num_trials"] / max(report["search_wall_time_s"], 1e-9) * 60
        rows.append((f"{arch} 32x32 search, --gpus-per-trial {share:g} (trials/min)", f"{per_minute:.1f}"))
    return rows


def write_cifar10(root: Path, per_class: int) -> Path:
    """A CIFAR-10 folder in the official python format: 5 training batches of `per_class`
    generated 32x32 images per class each (class = mean colour plus noise), and a test batch."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(count: int) -> dict:
        labels = np.repeat(np.arange(10), count)
        means = rng.integers(40, 215, (10, 3, 1, 1))
        images = np.clip(means[labels] + rng.normal(0, 40, (len(labels), 3, 32, 32)), 0, 255).astype(np.uint8)
        return {b"data": images.reshape(len(labels), -1), b"labels": labels.tolist(), b"batch_label": b"generated"}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_class)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(per_class)))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"class{c}".encode() for c in range(10)]}))
    return folder


def trial_phases(args, device: torch.device) -> list[tuple[str, str]]:
    """One trial's phases for ResNet-50 at 224 on generated images (seconds each)."""
    import numpy as np
    from torch.utils.data import TensorDataset

    from lcp_tune.candidate import build_pruner
    from lcp_tune.data import DataSplits
    from lcp_tune.devices import place
    from lcp_tune.models import build_model
    from lcp_tune.run.settings import resolve_config
    from lcp_tune.training import cycle, evaluate, recalibrate_bn, sgd, train_steps

    arch, side, steps, batch, val = ("resnet18", 64, 5, 8, 32) if args.smoke else ("resnet50", 224, 100, 64, 2048)
    images = torch.rand(max(batch * 4, val), 3, side, side)
    labels = torch.randint(0, 100, (len(images),))
    split = TensorDataset(images, labels)
    data = DataSplits(split, TensorDataset(images[:val], labels[:val]), split, 100, (3, side, side))
    config = resolve_config({"arch": arch, "data": "digits", "prune.budget": 0.5})
    base = build_model(arch, 100, 3)
    pruner = build_pruner(config, base, data)
    vector = pruner.uniform(0.5) + np.random.default_rng(0).normal(0, 0.1, pruner.uniform(0.5).shape)
    box = {}
    rows = [(f"{arch} {side}x{side} trial: plan (s)", f"{timed(lambda: box.update(plan=pruner.plan(vector, 0.5)), torch.device('cpu')):.3f}")]
    rows.append((f"{arch} trial: surgery (s)", f"{timed(lambda: box.update(model=pruner.apply(box['plan'])), torch.device('cpu')):.3f}"))
    model = place(box["model"], device)
    train = data.loader("train", batch, shuffle=True)
    rows.append((f"{arch} trial: BN recalibration, 8 batches of {batch} (s)",
                 f"{timed(lambda: recalibrate_bn(model, train, 8), device):.2f}"))
    optimizer = sgd(model, 0.01)
    batches = cycle(train)
    rows.append((f"{arch} trial: {steps} SGD steps of {batch} (s)",
                 f"{timed(lambda: train_steps(model, batches, steps, optimizer, amp=device.type == 'cuda'), device):.2f}"))
    rows.append((f"{arch} trial: validation on {val} images (s)",
                 f"{timed(lambda: evaluate(model, data.loader('val', 256)), device):.2f}"))
    return rows


def finetune_step(args, device: torch.device) -> list[tuple[str, str]]:
    """Fine-tune step time of ResNet-50 at 224: bf16 autocast + channels_last against fp32 + NCHW."""
    from lcp_tune.models import build_model
    from lcp_tune.training import sgd, train_steps

    arch, side, batch, steps = ("resnet18", 64, 8, 3) if args.smoke else ("resnet50", 224, 128, 20)
    rows = []
    for fast in (False, True):
        model = build_model(arch, 1000, 3).to(device, memory_format=torch.channels_last if fast else
                                              torch.contiguous_format)
        x = torch.rand(batch, 3, side, side, device=device)
        x = x.contiguous(memory_format=torch.channels_last) if fast else x
        y = torch.randint(0, 1000, (batch,), device=device)
        optimizer = sgd(model, 0.01)

        def run(n):
            return train_steps(model, iter([(x, y)] * n), n, optimizer, amp=fast and device.type == "cuda")

        run(2)   # warm-up: cuDNN autotuning, allocator
        seconds = timed(lambda: run(steps), device) / steps
        label = "bf16 + channels_last" if fast else "fp32 + NCHW"
        rows.append((f"{arch} {side}x{side} fine-tune step, batch {batch}, {label} (ms)", f"{seconds * 1000:.1f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the tests' CPU run of the same code")
    parser.add_argument("--timeout", type=int, default=300, help="seconds for the default search")
    args = parser.parse_args()
    from lcp_tune.devices import device_name, resolve_device
    from lcp_tune.errors import LcpTuneError

    try:
        device = resolve_device(args.device)
    except LcpTuneError as exc:
        sys.exit(f"gpu_check: {exc}")
    torch.backends.cudnn.benchmark = True
    rows: list[tuple[str, str]] = [("device", device_name(device)), ("torch", torch.__version__)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sections = {"default search": lambda: default_search(args, work),
                    "search throughput": lambda: search_throughput(args, work),
                    "trial phases": lambda: trial_phases(args, device),
                    "fine-tune step": lambda: finetune_step(args, device)}
        for name, section in sections.items():
            try:
                rows += section()
            except Exception as exc:   # one row's failure is a row, not the end of the table
                rows.append((name, f"failed: {type(exc).__name__}: {str(exc).strip()[:200]}"))
            print(f"[{time.perf_counter() - start:.0f}s] {rows[-1][0]}: {rows[-1][1]}", flush=True)
    rows.append(("gpu_check wall time (s)", f"{time.perf_counter() - start:.0f}"))
    table = "\n".join(["| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    print(table)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.md").write_text(table + "\n")
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(dict(rows), indent=1))


if __name__ == "__main__":
    main()
