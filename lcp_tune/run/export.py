"""Export an experiment's pruned network, prove the file computes the same thing, time it.

`export_experiment` writes the pruned model of EXPERIMENT/pruned/ as TorchScript, ONNX or a
portable state-dict folder, loads the written file back with the runtime a user would deploy
it on, and compares its outputs with the PyTorch module's on random inputs: an export that
silently changes the numbers is worse than no export. It then measures the latency of the
base and the pruned network on the current device, because FLOPs saved are not time saved.

    EXPORT/                   default EXPERIMENT/export/<format>/
      model.torchscript.pt    torchscript
      model.onnx              onnx
      plan.json + model.pt    state-dict (rebuilt with lcp_tune.load_pruned(EXPORT))
      export_report.json      the check and the latencies

>>> report = export_experiment("lcp-runs/search-...", "onnx")   # doctest: +SKIP
>>> print(report.table())                                       # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from lcp_tune.store.checkpoints import load_into, load_state_dict
from lcp_tune.store.experiment import Experiment
from lcp_tune.store.files import atomic_path, atomic_write, check_no_link_out, read_json, write_json
from lcp_tune.models import build_model
from lcp_tune.store.pruned_io import load_pruned
from lcp_tune.store.lock import experiment_lock
from lcp_tune.devices import device_name, resolve_device
from lcp_tune.errors import LcpTuneError
from lcp_tune.registry import Registry

CHECK_BATCH = 8          # random inputs the exported file is compared on
TRACE_BATCH = 2          # example batch used to trace / export; != CHECK_BATCH so a baked-in
                         # batch size fails the check instead of shipping
ATOL, RTOL = 1e-4, 1e-4  # float32 kernels of two runtimes differ by ~1e-6 on small nets
INSTALL_HINT = "pip install 'lcp-tune[export]'"

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Exporter:
    """One export format: how to write the pruned model, and how to run the written file.

    Args:
        filename: the file inside the export folder ("" = the folder itself is the export).
        suffixes: an --out path ending in one of these is the file, not a folder.
        requires: modules that must import, with the pip packages that provide them.
        write: (model, example input, source pruned/ folder, target path) -> None.
        reload: target path -> a function computing the exported network's outputs on CPU.
    """

    name: str
    filename: str
    suffixes: tuple[str, ...]
    requires: tuple[str, ...]
    write: Callable[[nn.Module, torch.Tensor, Path, Path], None]
    reload: Callable[[Path], Runner]


EXPORTERS: Registry[Exporter] = Registry("export format")


@dataclass(frozen=True)
class Timing:
    """How latency is measured: warm-up runs, then timed runs until both `min_runs` and
    `budget_s` are reached (at most `max_runs`), at each batch size."""

    batches: tuple[int, ...] = (1, 64)   # one request at a time, and a throughput batch
    warmup: int = 2                      # first runs pay for allocation and kernel selection
    min_runs: int = 3                    # a ResNet-50 at batch 64 takes seconds a run on CPU
    max_runs: int = 100
    budget_s: float = 2.0                # per batch size, base and pruned together


DEFAULT_TIMING = Timing()


def list_export_formats() -> list[str]:
    return EXPORTERS.names()


def _write_torchscript(model: nn.Module, example: torch.Tensor, source: Path, target: Path) -> None:
    # Tracing, not scripting: it accepts any CNN whose forward has no data-dependent branches.
    # PyTorch marks torch.jit deprecated; the user asked for this format, so hide the warning.
    # trace's own check_trace is skipped: check_export compares the saved file instead.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    with atomic_path(target) as tmp:
        traced.save(str(tmp))


def _reload_torchscript(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return lambda x: module(x)


def _write_onnx(model: nn.Module, example: torch.Tensor, source: Path, target: Path) -> None:
    # The torch.export-based exporter (needs onnxscript): the TorchScript-based one is
    # deprecated since PyTorch 2.9. The batch dimension stays dynamic.
    program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                input_names=["input"], output_names=["logits"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    with atomic_path(target) as tmp:
        program.save(str(tmp))


def _reload_onnx(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _write_state_dict(model: nn.Module, example: torch.Tensor, source: Path, target: Path) -> None:
    # The experiment's own format, made portable: plan.json + model.pt, no pickled code.
    for name in ("plan.json", "model.pt"):
        atomic_write(target / name, (source / name).read_bytes())


def _reload_state_dict(path: Path) -> Runner:
    module = load_pruned(path)
    return lambda x: module(x)


EXPORTERS.register("torchscript", Exporter("torchscript", "model.torchscript.pt", (".pt", ".pth", ".ts"),
                                           (), _write_torchscript, _reload_torchscript))
EXPORTERS.register("onnx", Exporter("onnx", "model.onnx", (".onnx",), ("onnx", "onnxruntime", "onnxscript"),
                                    _write_onnx, _reload_onnx))
EXPORTERS.register("state-dict", Exporter("state-dict", "", (), (), _write_state_dict, _reload_state_dict))


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote, how closely the file matches PyTorch, and base vs pruned latency."""

    experiment: str
    format: str
    path: str
    input_shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    check_inputs: int
    flops_ratio: float
    params_ratio: float
    device: str
    threads: int
    load_average: Optional[float]             # of the machine while timing (None: unknown)
    latency_ms: dict[str, dict[int, float]]   # {"base" | "pruned": {batch: median ms}}

    @property
    def speedup(self) -> dict[int, float]:
        base, pruned = self.latency_ms["base"], self.latency_ms["pruned"]
        return {b: base[b] / pruned[b] for b in pruned}

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}

    def table(self) -> str:
        """The short summary the CLI prints."""
        lines = [f"exported {self.format}: {self.path}",
                 f"check: max |difference| {self.max_abs_diff:.2e} <= tolerance {self.tolerance:.2e} "
                 f"on {self.check_inputs} random inputs of shape {tuple(self.input_shape)}",
                 f"pruned: {self.flops_ratio:.1%} of the FLOPs, {self.params_ratio:.1%} of the parameters",
                 f"latency on {self.device}, {self.threads} thread{'s' * (self.threads != 1)}{self._load_note()} (median, ms):",
                 f"  {'batch':>5} {'base':>9} {'pruned':>9} {'speedup':>8}"]
        for b, x in self.speedup.items():
            lines.append(f"  {b:>5} {self.latency_ms['base'][b]:>9.3f} {self.latency_ms['pruned'][b]:>9.3f} {x:>7.2f}x")
        return "\n".join(lines)

    def _load_note(self) -> str:
        busy = self.load_average is not None and self.load_average > (os.cpu_count() or 1)
        return f", machine busy: load {self.load_average:g} on {os.cpu_count()} cores" if busy else ""


def export_experiment(experiment: str | Path, fmt: str, out: Optional[str | Path] = None,
                      timing: Optional[Timing] = None, log: Callable[[str], None] = lambda line: None,
                      trust_code: bool = False, device: str = "auto") -> ExportReport:
    """Export EXPERIMENT's pruned model as `fmt`, check the written file, time base vs pruned.

    Args:
        experiment: an experiment folder written by `lcp-tune search` (config.yaml, pruned/).
        fmt: torchscript, onnx or state-dict.
        out: the export folder, or for torchscript / onnx a file path ending in .pt / .onnx
            (default EXPERIMENT/export/<fmt>/). export_report.json is written in that folder.
        timing: how many runs the latency medians take (default DEFAULT_TIMING).
        log: receives one progress line per step.
        trust_code: allow a plan.json that names a package.module:factory architecture.
        device: where the latency is timed: auto (CUDA when present), cpu, cuda or cuda:N.

    Raises:
        LcpTuneError: not an experiment, no pruned model, format not installed, an export
            that fails or whose outputs differ from PyTorch's by more than the tolerance.
    """
    exporter = EXPORTERS.get(fmt)
    _require(exporter)
    where = resolve_device(device)   # a missing GPU is named before any work
    timing = timing or DEFAULT_TIMING
    exp = Experiment(Path(experiment))
    exp.config()                          # one-line error if this is not an experiment folder
    with experiment_lock(exp.root, "export"):
        return _export(exp, exporter, fmt, out, timing, where, log, trust_code)


def _export(exp: Experiment, exporter: Exporter, fmt: str, out: Optional[str | Path], timing: Timing,
            where: torch.device, log: Callable[[str], None], trust_code: bool) -> ExportReport:
    meta, pruned = _load_pruned_model(exp, trust_code)
    shape = tuple(meta["input_shape"])
    folder, target = _resolve_target(exp, exporter, out)
    log(f"writing {fmt} to {target}")
    _write(exporter, pruned, shape, exp.pruned_dir, target, meta["arch"])
    log(f"checking {target} against the PyTorch model on {CHECK_BATCH} random inputs")
    diff, tol = check_export(exporter, pruned, target, shape)
    log(f"timing base vs pruned on {device_name(where)} at batch {', '.join(map(str, timing.batches))}")
    latency = measure_latency({"base": _load_base(exp, meta), "pruned": pruned}, shape, where, timing)
    plan = meta["plan"]
    report = ExportReport(str(exp.root), fmt, str(target), shape, diff, tol, CHECK_BATCH,
                          plan["flops"] / plan["base_flops"], plan["params"] / plan["base_params"],
                          device_name(where), torch.get_num_threads(), _load_average(), latency)
    write_json(folder / "export_report.json", report.to_dict())
    return report


def _require(exporter: Exporter) -> None:
    """Fail before any work, naming the format and the pip command, if its packages are missing."""
    for module in exporter.requires:
        try:
            importlib.import_module(module)
        except ImportError:
            names = exporter.requires
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            raise LcpTuneError(f"export format {exporter.name!r} needs the {listed} packages "
                               f"({module!r} is not installed): {INSTALL_HINT}") from None


def _load_pruned_model(exp: Experiment, trust_code: bool) -> tuple[dict, nn.Module]:
    if not (exp.pruned_dir / "plan.json").is_file():
        raise LcpTuneError(f"experiment {exp.root} has no pruned model (no pruned/plan.json): "
                           "export needs a search that ran to the end")
    return read_json(exp.pruned_dir / "plan.json"), load_pruned(exp.pruned_dir, trust_code)


def _resolve_target(exp: Experiment, exporter: Exporter, out: Optional[str | Path]) -> tuple[Path, Path]:
    """(export folder, exported file or folder); an --out with the format's suffix is the file."""
    out = Path(out) if out is not None else exp.root / "export" / exporter.name
    if out.suffix in exporter.suffixes:
        folder, target = out.parent, out
    else:
        folder = out
        target = folder / exporter.filename if exporter.filename else folder
    if folder.exists() and not folder.is_dir():
        raise LcpTuneError(f"export folder {folder} exists and is a file; choose another --out")
    check_no_link_out(folder / "export_report.json")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, target


def _write(exporter: Exporter, model: nn.Module, input_shape: tuple[int, ...], source: Path,
           target: Path, arch: str) -> None:
    """Write the export; an exporter's failure (an unsupported op, say) becomes one line."""
    example = torch.randn(TRACE_BATCH, *input_shape)
    try:
        exporter.write(model, example, source, target)
    except LcpTuneError:
        raise
    except Exception as exc:  # exporters raise many types; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LcpTuneError(f"exporting the pruned {arch!r} as {exporter.name} failed: {first[:200]}") from None


def check_export(exporter: Exporter, model: nn.Module, target: Path, input_shape: tuple[int, ...],
                 seed: int = 0) -> tuple[float, float]:
    """Max abs difference between the exported file and `model` on CPU, and the tolerance.

    The tolerance scales with the outputs' magnitude (ATOL + RTOL * max |output|), so large
    logits of an untrained network do not fail on float32 rounding alone.
    """
    x = torch.randn(CHECK_BATCH, *input_shape, generator=torch.Generator().manual_seed(seed))
    got = _run_exported(exporter, target, x)
    with torch.inference_mode():
        expected = model.cpu().eval()(x)
    if tuple(got.shape) != tuple(expected.shape):
        raise LcpTuneError(f"exported {exporter.name} file {target} gives outputs of shape {tuple(got.shape)} "
                           f"for a batch of {CHECK_BATCH}; the PyTorch model gives {tuple(expected.shape)}")
    diff = (got.float() - expected).abs().max().item()
    tol = ATOL + RTOL * expected.abs().max().item()
    if not diff <= tol:   # also catches NaN
        raise LcpTuneError(f"exported {exporter.name} file {target} does not match the PyTorch model: "
                           f"max abs difference {diff:.3g} > tolerance {tol:.3g} on {CHECK_BATCH} random inputs")
    return diff, tol


def _run_exported(exporter: Exporter, target: Path, x: torch.Tensor) -> torch.Tensor:
    """Load and run the written file; a runtime that rejects it is a failed export, in one line.

    Loading runs outside inference mode: rebuilding a state-dict export traces with autograd.
    """
    try:
        run = exporter.reload(target)
        with torch.inference_mode():
            return run(x)
    except LcpTuneError:
        raise
    except Exception as exc:  # runtimes raise their own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LcpTuneError(f"exported {exporter.name} file {target} could not be loaded and run: {first[:200]}") from None


def _load_base(exp: Experiment, meta: dict) -> nn.Module:
    """The base network; without base.pt, initial weights (latency does not depend on them)."""
    model = build_model(meta["arch"], meta["num_classes"], meta["input_shape"][0])
    if exp.base_path.is_file():
        load_into(model, load_state_dict(exp.base_path), str(exp.base_path), meta["arch"])
    return model.eval()


def _load_average() -> Optional[float]:
    """One-minute load average: timings taken on a busy machine say so in the report."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):   # Windows
        return None


def measure_latency(models: dict[str, nn.Module], input_shape: tuple[int, ...], device: torch.device,
                    timing: Timing = DEFAULT_TIMING) -> dict[str, dict[int, float]]:
    """Median milliseconds per forward pass, {model name: {batch: ms}}, on `device`."""
    models = {name: m.to(device).eval() for name, m in models.items()}
    result: dict[str, dict[int, float]] = {name: {} for name in models}
    for batch in timing.batches:
        x = torch.randn(batch, *input_shape, device=device)
        for name, ms in _interleaved_medians(models, x, timing).items():
            result[name][batch] = ms
    return result


def _interleaved_medians(models: dict[str, nn.Module], x: torch.Tensor, timing: Timing) -> dict[str, float]:
    """Median of timed runs after warm-up, the models taking turns run by run.

    Taking turns means a burst of load on a shared machine slows both models alike, and the
    median ignores a run preempted outright. On CUDA every run is synchronised, since kernel
    launches return before the work is done.
    """
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(timing.warmup):
                model(x)
        sync()
        start, rounds = time.perf_counter(), 0
        while rounds < timing.max_runs and (rounds < timing.min_runs or time.perf_counter() - start < timing.budget_s):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x)
                sync()
                times[name].append((time.perf_counter() - t0) * 1000)
            rounds += 1
    return {name: statistics.median(t) for name, t in times.items()}
