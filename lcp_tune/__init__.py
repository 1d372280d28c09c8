"""lcp-tune: layer-compensated pruning of CNNs, with the compensations learned by Ray Tune.

The public API (imported on first use, so `import lcp_tune` stays light):

    search(**settings) -> SearchResult   the whole run: search, prune, fine-tune, report
    prune(model, budget, ...) -> module  prune any nn.Module in memory
    load_pruned(folder) -> module        rebuild a saved pruned model, without unpickling
    load_result(folder) -> SearchResult  a finished experiment, loaded
    LcpTuneError                         every user-facing error
"""
from .errors import LcpTuneError

__version__ = "0.1.0"
__all__ = ["LcpTuneError", "SearchResult", "load_pruned", "load_result", "prune", "search", "__version__"]

_LAZY = {"search": "api", "prune": "api", "load_result": "api", "SearchResult": "api",
         "load_pruned": "store.pruned_io"}


def __getattr__(name: str):
    """Import the API's heavy modules (torch, Ray) only when a name is first used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'lcp_tune' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
