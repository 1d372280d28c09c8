"""Errors raised by the pruning core; all are user-facing one-sentence ValueErrors."""
from ..errors import LcpTuneError


class PruningError(LcpTuneError):
    """The model cannot be pruned as asked (untraceable layer, unsupported module)."""


class UnreachableBudgetError(PruningError):
    """The budget is below the smallest cost the safeguard allows."""


class PruningCheckError(PruningError):
    """A pruned model does not match its plan: a layer has the wrong width, cost or output."""
