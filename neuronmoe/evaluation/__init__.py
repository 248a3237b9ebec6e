"""Evaluation through lm-eval: suites (paper, local), cells, runs, and Table 1 with its uncertainty (docs/evaluation.md)."""
from neuronmoe.evaluation.suites import TaskSpec, get_suite, load_suites, resolve_suite, specs_from_tasks
from neuronmoe.evaluation.table import Table, build_table, load_run, to_csv, to_markdown

__all__ = [
    "TaskSpec", "get_suite", "load_suites", "resolve_suite", "specs_from_tasks",
    "Table", "build_table", "load_run", "to_csv", "to_markdown",
]
