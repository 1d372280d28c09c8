"""Ray glue: the trial, cluster connection and the Ray session, schedulers, progress lines,
the trial cache, the search's outcome and its trial table. The pruning core, the data and the
models know nothing of Ray; the searchers only subclass its Searcher."""
