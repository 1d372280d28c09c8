"""lcp-tune: layer-compensated pruning of CNNs, with the compensations learned by Ray Tune."""
__version__ = "0.1.0"


def load_pruned(path):
    """Rebuild a pruned model from its folder (plan.json + model.pt), without unpickling."""
    from .pruned_io import load_pruned as _load
    return _load(path)


__all__ = ["load_pruned", "__version__"]
