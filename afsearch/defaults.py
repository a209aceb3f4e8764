"""Names several layers agree on, defined once (a leaf module: importing it loads nothing)."""

#: the proxy task a search or an evaluation uses when none is given
DEFAULT_TASK = "mnist1d-mlp"
#: where candidates train: an embedded or joined Ray cluster, or this process, one at a time
BACKENDS = ("ray", "local")
#: how an evaluation ended: trained to the end, stopped by a rung of the ladder, or broke
DONE, REJECTED, FAILED = "done", "rejected", "failed"
OUTCOMES = (DONE, REJECTED, FAILED)
#: how a search on several tasks combines each task's relative delta to its best baseline into
#: the one score it ranks by: the worst of them (the default), or their mean
TASK_AGGREGATES = ("worst", "mean")
