"""Analysis of lcp-tune experiments: trials as pandas tables, reports and plots."""
