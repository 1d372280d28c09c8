"""Reading and writing weights safely: state_dicts only, loaded with weights_only=True."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from lcp_tune.errors import LcpTuneError

from .files import atomic_path

STATE_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict (or a dict holding one under a usual key), never unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise LcpTuneError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):   # a pickled object, refused by weights_only=True
            raise LcpTuneError(f"checkpoint {path} holds pickled Python objects besides tensors, which lcp-tune "
                               f"never loads (they could run code); save model.state_dict() instead") from None
        raise LcpTuneError(f"checkpoint {path} is not a readable PyTorch state_dict (it does not unpickle "
                           f"as tensors)") from None
    except Exception as exc:
        raise LcpTuneError(f"checkpoint {path} is not a readable PyTorch state_dict ({_words(exc)})") from None
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LcpTuneError(f"checkpoint {path} holds no state_dict of tensors "
                           f"(looked at the top level and under {', '.join(STATE_KEYS)})")
    for key, value in obj.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = "NaN" if bool(torch.isnan(value).any()) else "infinite"
            raise LcpTuneError(f"checkpoint {path} holds {bad} values in {key!r}: a diverged or damaged model; "
                               f"every weight and BatchNorm statistic must be finite")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _words(exc: BaseException, limit: int = 100) -> str:
    """The error's first line, cut at a word boundary."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> nn.Module:
    """Load `state` into `model`, naming the first mismatching key and shapes if it does not fit."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise LcpTuneError(f"checkpoint {source} does not fit architecture {arch!r}: key {key!r} is missing")
        if tuple(state[key].shape) != tuple(value.shape):
            raise LcpTuneError(
                f"checkpoint {source} does not fit architecture {arch!r}: {key!r} has shape "
                f"{tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model")
    extra = sorted(set(state) - set(own))
    if extra:
        raise LcpTuneError(f"checkpoint {source} does not fit architecture {arch!r}: unexpected key {extra[0]!r}")
    model.load_state_dict(state)
    return model


def save_state_dict(model_or_state: nn.Module | dict, path: str | Path) -> None:
    """Write a state_dict atomically (a crash never leaves a half-written file behind)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def file_hash(path: str | Path) -> str:
    """Short SHA-256 of a file: identifies the base checkpoint a compensation was learned on."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
