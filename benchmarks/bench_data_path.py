"""Where a search trial's time goes on ImageNet-format data, with the search's decoded subsets
shared by every trial against decoding JPEGs in every trial (issue 14, benchmark 7a).

    python benchmarks/bench_data_path.py                # ResNet-50 at 224, 2,500 generated JPEGs
    python benchmarks/bench_data_path.py --smoke         # seconds: the test suite runs this

The benchmark writes an ImageFolder tree of generated JPEGs (--classes x --per-class training
images of 500 x 375 pixels, smooth colour fields with noise so they decode like photographs,
about 100 KB each at quality 90, and 2 per class in val/) and evaluates the same candidates
with `lcp_tune.candidate.CandidateEvaluator`, the object a Ray Tune trial runs, in two modes:

* per-trial decoding: `--no-shared-data`, the DataLoader path, workers and threads as a trial
  of --cpus CPUs gets them by default (loader workers = cpus - 1 once the set has 2,048 images);
* shared: `search.shared_data` on, the subsets decoded once (timed separately) and every trial
  reading uint8 tensors with the augmentation on tensors, all --cpus CPUs computing.

Per trial it prints the evaluator's own breakdown (time_prune, time_bn, time_steps, time_val
and, within those, time_data waiting for batches) and writes results.json to --out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lcp_tune.candidate import CandidateEvaluator, build_pruner
from lcp_tune.config import ExperimentConfig
from lcp_tune.data import load_experiment_data
from lcp_tune.data.search_subsets import search_subsets
from lcp_tune.models import build_model
from lcp_tune.store.files import write_json

PHASES = ("prune", "bn", "steps", "val", "data")


def write_jpegs(root: Path, classes: int, per_class: int, size: tuple[int, int], seed: int = 0) -> Path:
    """An ImageFolder tree of photograph-like JPEGs (reused when already written)."""
    from PIL import Image

    marker = root / f".written-{classes}x{per_class}-{size[0]}x{size[1]}"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                coarse = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
                field = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), dtype=np.float32)
                pixels = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{i}.JPEG", quality=90)
    marker.write_text("done\n")
    return root


def run(args: argparse.Namespace) -> dict:
    data_dir = write_jpegs(args.out / "jpegs", args.classes, args.per_class, (500, 375) if not args.smoke else (64, 48))
    config = ExperimentConfig(arch=args.arch, data="imagenet", data_dir=str(data_dir), image_size=args.size,
                              seed=0, device="cpu")
    config = config.replace(**{"search.batch_size": args.batch, "search.tau_hat": args.steps, "search.race": (),
                               "search.bn_batches": args.bn_batches, "search.cpus_per_trial": args.cpus,
                               "prune.budget": 0.5})
    torch.set_num_threads(args.cpus)
    data = load_experiment_data(config)
    torch.manual_seed(0)   # an untrained network: only the time matters, but the same one every run
    model = build_model(config.arch, data.num_classes, data.input_shape[0])
    pruner = build_pruner(config, model, data)
    rng = np.random.default_rng(0)
    vectors = [pruner.uniform(0.5)] + [rng.uniform(-1, 1, len(pruner.identity())) for _ in range(args.trials - 1)]
    modes = {}
    for mode in ("per-trial decoding", "shared"):
        shared = mode == "shared"
        run_config = config.replace(**{"search.shared_data": shared})
        start = time.perf_counter()
        subsets = search_subsets(run_config, data, print, cpus=args.cpus) if shared else None
        decode_s = time.perf_counter() - start
        evaluator = CandidateEvaluator(run_config, data=data, pruner=pruner, subsets=subsets)
        trials = []
        for vector in vectors:
            start = time.perf_counter()
            result = evaluator.evaluate(vector)
            wall = time.perf_counter() - start
            trials.append({"wall": wall, "val_loss": result["val_loss"],
                           **{p: result[f"time_{p}"] for p in PHASES}})
            print(f"{mode:>18}: " + ", ".join(f"{p} {trials[-1][p]:.2f}s" for p in PHASES) +
                  f", trial {wall:.2f}s, val loss {result['val_loss']:.4f}", flush=True)
        modes[mode] = {"decode_once_s": decode_s, "threads": evaluator.threads,
                       "loader_workers": 0 if shared else data.loader_workers(args.cpus), "trials": trials}
    return {"arch": args.arch, "size": args.size, "train_images": len(data.train), "val_images": len(data.val),
            "batch": args.batch, "steps": args.steps, "bn_batches": args.bn_batches, "cpus": args.cpus,
            "torch": torch.__version__, "modes": modes}


def table(results: dict) -> str:
    """The markdown table for BENCHMARKS.md: mean seconds per trial by phase, each mode."""
    lines = ["| mode | CPUs: compute + loader | decode once | prune | BN recal. | steps | validation | "
             "of which data | trial | compute (trial - data) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, entry in results["modes"].items():
        mean = {k: float(np.mean([t[k] for t in entry["trials"]])) for k in ("wall",) + PHASES}
        lines.append(f"| {mode} | {entry['threads']} + {entry['loader_workers']} | "
                     f"{entry['decode_once_s']:.1f} s | {mean['prune']:.2f} | {mean['bn']:.2f} | {mean['steps']:.2f} | "
                     f"{mean['val']:.2f} | {mean['data']:.2f} | {mean['wall']:.2f} | {mean['wall'] - mean['data']:.2f} |")
    per, shared = (float(np.mean([t["data"] for t in results["modes"][m]["trials"]]))
                   for m in ("per-trial decoding", "shared"))
    lines.append("")
    lines.append(f"Data time per trial: {per:.2f} s per-trial decoding, {shared:.3f} s shared "
                 f"({per / max(shared, 1e-9):.0f}x less).")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_path"))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=25)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bn-batches", type=int, default=2)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny: resnet20_tiny at 32 px, 60 small JPEGs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.size, args.classes, args.per_class, args.batch, args.steps = "resnet20_tiny", 32, 3, 20, 4, 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args)
    write_json(args.out / "results.json", results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
