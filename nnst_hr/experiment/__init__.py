"""Experiments: a grid of settings over content/style pairs, each stage computed once.

``run_plan("plan.toml", "results/")`` validates the plan (:mod:`.plan`), builds the task graph of
pure stage functions (:mod:`.graph`, :mod:`.stages`), runs what the cache (:mod:`.cache`) lacks
(:mod:`.execute`) and writes ``results.csv``, ``sheet.png`` and ``report.html`` (:mod:`.report`).
"""

from .driver import Summary, run_plan
from .plan import Plan, RunSpec, load_plan

__all__ = ["Plan", "RunSpec", "Summary", "load_plan", "run_plan"]
