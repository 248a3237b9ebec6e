"""How ``neuronmoe reproduce-paper`` uses the budget: the budget added to the dry run's facts (:func:`attach`), the
lines it prints (:func:`lines`) and the checks that stop it (:func:`final_checks`). Its flags (``--gpu``,
``--gpu-memory``, ``--mfu``, ``--check``, ``--accept-allocation-diff``) are fields of
:class:`neuronmoe.pipeline.settings.ReproduceSettings`; ``args`` below is its :meth:`~ReproduceSettings.budget_args`.

Hook points in ``neuronmoe/pipeline/stage.py`` (kept to three calls so that they move with the code):
``attach(facts, args)`` right after the facts are computed; ``lines(facts)`` printed after the settings table;
``final_checks(facts, args)`` after the table's own check (and before ``--print-commands`` hands the plan to the runner).
"""
from __future__ import annotations

import argparse
from typing import Any


def attach(facts: dict[str, Any], args: argparse.Namespace, client: Any = None) -> None:
    """``facts["budget"]`` (and with ``--check`` ``facts["access"]``) for the card of ``--gpu``."""
    from neuronmoe.budget.gpus import resolve_gpu
    from neuronmoe.budget.plan import budget_of, preflight

    gpu = resolve_gpu(args.gpu, args.gpu_memory, args.mfu)
    if getattr(args, "check", False):
        record, problems = preflight(facts, gpu, client)
        facts.update(budget=record["budget"], access=record["access"], check_problems=problems)
    else:
        facts["budget"] = budget_of(facts, gpu)
    facts["notes"] = [*facts.get("notes", []), *quoted_rows(facts)]


def quoted_rows(facts: dict[str, Any]) -> list[str]:
    """Paper rows this plan quotes but does not reproduce (``paper_results.yaml`` ``not_reproduced``)."""
    from neuronmoe.config import load_yaml

    quoted = load_yaml("paper_results").get("not_reproduced") or {}
    labels = " ".join(facts["commands"])
    return [f"{label}: quoted by the paper, not reproduced here ({why})" for label, why in quoted.items()
            if f"'{label}'" in labels or f"--label {label} " in labels]


def lines(facts: dict[str, Any]) -> list[str]:
    from neuronmoe.budget.plan import format_access, format_budget

    out = [format_budget(facts["budget"])]
    if "access" in facts:
        out += format_access(facts["access"])
    out += [f"# note: {n}" for n in facts.get("notes", [])]
    return out


def final_checks(facts: dict[str, Any], args: argparse.Namespace, strict_disk: bool = False) -> None:
    """Stop (one line, exit 2) on a training run that does not fit its device; with ``--check`` (or
    ``strict_disk``: the plan is about to run) also on missing access and a full disk."""
    from neuronmoe.budget.plan import check_disk, check_memory
    from neuronmoe.errors import StateError

    check_memory(facts["budget"])
    if facts.get("check_problems"):
        raise StateError(f"reproduce-paper --check: {len(facts['check_problems'])} problem(s): "
                         + "; ".join(facts["check_problems"]))
    if strict_disk:
        check_disk(facts["budget"])
