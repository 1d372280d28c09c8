"""The LCP core: channel groups, metrics, compensation, resource cost, planner and surgery.

Only torch, numpy and torch-pruning are imported here, so the core is usable as a plain library:

>>> from lcp_tune.models import build_model
>>> from lcp_tune.pruning import Pruner
>>> pruner = Pruner(build_model("resnet20_tiny", 10, 1), (1, 8, 8))
>>> plan = pruner.plan(pruner.identity(), budget=0.5)
>>> small = pruner.apply(plan)          # a physically smaller nn.Module, checked
"""
from .errors import PruningError, UnreachableBudgetError, PruningCheckError
from .groups import ChannelGroup, ChannelStructure, DimSlice, LayerInfo, trace_structure
from .metrics import METRICS, list_metrics, channel_metrics
from .compensation import COMPENSATIONS, list_compensations, Compensation
from .resources import CostModel, measure_cost
from .planner import Plan, plan_keep
from .surgery import prune_model, rebuild_pruned
from .check import verify_pruned, check_equivalent
from .pruner import Pruner

__all__ = [
    "PruningError", "UnreachableBudgetError", "PruningCheckError", "ChannelGroup",
    "ChannelStructure", "DimSlice", "LayerInfo", "trace_structure", "METRICS", "list_metrics",
    "channel_metrics", "COMPENSATIONS", "list_compensations", "Compensation", "CostModel",
    "measure_cost", "Plan", "plan_keep", "prune_model", "verify_pruned", "check_equivalent", "rebuild_pruned", "Pruner",
]
