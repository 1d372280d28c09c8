"""Analysis of lcp-tune experiments: trials as pandas tables, reports and plots."""
from .report import AnalysisIncomplete, AnalysisResult, write_analysis
from .trials import load_trials

__all__ = ["AnalysisIncomplete", "AnalysisResult", "load_trials", "write_analysis"]
