"""Running the plan: fingerprints, skip/resume, the stages' environment, timings.

A stage is skipped when its completion marker (the stage's ``manifest.json``, or the allocation JSON)
exists and the fingerprint recorded by the pipeline when it last finished equals the current one: the
sha256 of the stage's exact command line and of the completion markers of the stages it reads. A rerun
upstream therefore re-runs what depends on it; a killed run re-does only the stage it was in (training
stages continue from their last checkpoint with ``--resume``). State: ``$OUTPUT_DIR/pipeline/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from neuronmoe.errors import ConfigError, StateError
from neuronmoe.pipeline.plan import Stage, plan
from neuronmoe.pipeline.settings import PipelineSettings
from neuronmoe.utils.io import atomic_write_json, sha256_file

#: variables that would rewire the pipeline's stages (which adapter is evaluated, where an allocation or a
#: result is written, which run is analysed, ...): the pipeline decides these itself, and removes them from
#: its stages' environment
CLEARED = ("PEFT_MODEL_PATH", "OUTPUT_PATH", "EVAL_RUN_NAME", "EVAL_LABEL", "RUN_NAME", "STAGE", "STAGE1_ADAPTER",
           "ALLOCATION", "ALLOCATION_NAME", "ALLOCATION_OUT", "ALLOCATION_FIGURE", "MODE", "SCORES_CSV",
           "REFERENCE_ALLOCATION", "COMPARE_WITH", "NEURONS_DIR", "SIMILARITY_DIR", "DATA_DIR", "ANALYSIS_RUN",
           "ANALYSIS_ADAPTER", "ANALYSIS_LANGUAGES", "FIGURES_DIR", "REPORT_PATH", "RESUME", "OVERWRITE")


# ------------------------------------------------------------------------------------ fingerprints
def fingerprint(stage: Stage, stages: dict[str, Stage], out_dir: Path) -> str:
    """sha256 of the stage's command line and of its dependencies' completion markers."""
    markers = {d: out_dir / stages[d].marker for d in stage.deps}
    payload = {"argv": stage.argv, "deps": {d: sha256_file(p) if p.exists() else None for d, p in markers.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def state_path(out_dir: Path, name: str) -> Path:
    return out_dir / "pipeline" / "state" / f"{name}.json"


def is_complete(stage: Stage, stages: dict[str, Stage], out_dir: Path) -> bool:
    sp = state_path(out_dir, stage.name)
    if not (out_dir / stage.marker).exists() or not sp.exists():
        return False
    try:
        rec = json.loads(sp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return rec.get("fingerprint") == fingerprint(stage, stages, out_dir)


# ------------------------------------------------------------------------------------- environment
def honoured_variables(stages: Sequence[Stage]) -> dict[str, set[str]]:
    """``{variable: commands that read it}`` for the pipeline and its stages: a stage reads a variable of
    its command unless the pipeline passes that flag or clears the variable (:data:`CLEARED`)."""
    from neuronmoe.envvars import VARS, reads

    out: dict[str, set[str]] = {name: {"pipeline"} for name in reads("pipeline")}
    for s in stages:
        cmd, flags = s.argv[0], {a for a in s.argv if a.startswith("--")}
        for v in VARS:
            flag = v.reads.get(cmd, "")
            if flag and v.name not in CLEARED and flag.split()[0] not in flags:
                out.setdefault(v.name, set()).add(cmd)
    return out


def stage_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The stages' environment: ours minus :data:`CLEARED` (and their old names); the start report done."""
    from neuronmoe.envvars import BY_NAME, REPORTED

    env = dict(os.environ if environ is None else environ)
    for name in CLEARED:
        for n in [name, *(a.name for a in BY_NAME[name].aliases)]:
            env.pop(n, None)
    env[REPORTED] = "1"
    return env


# ------------------------------------------------------------------------------------------ checks
class StageFailedError(StateError):
    """A stage of the pipeline exited with an error (its own message is printed above this one)."""


def preflight(cfg: PipelineSettings) -> None:
    """Every argument of the pipeline, checked before its first stage starts (the stages check their own
    again): the settings (languages, sizes: :meth:`PipelineSettings.validate`), the output folder, the model (it
    must have weights: the pipeline trains) and the evaluation suite. Raises a one-line user error."""
    from neuronmoe.evaluation.suites import get_suite
    from neuronmoe.models import resolve_model

    cfg.validate()
    out = Path(cfg.output_dir)
    blocked = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise NotADirectoryError(f"--output-dir {cfg.output_dir}: {blocked} is a file, not a folder")
    resolve_model(cfg.model, flag="--model")
    get_suite(cfg.eval_suite)


# ------------------------------------------------------------------------------------------ running
def run_pipeline(cfg: PipelineSettings, *, dry_run: bool = False, only: Sequence[str] | None = None,
                 rerun: Sequence[str] | None = None, python: str = sys.executable,
                 runner: Callable[[list[str]], int] | None = None) -> dict[str, Any]:
    """Run (or, with ``dry_run``, print) every stage that is not complete; write report.md.

    ``runner(cmd: list[str]) -> int`` replaces ``subprocess.call`` (tests). Returns the timings.
    """
    from neuronmoe.pipeline.report import write_report

    timings = run_stages(plan(cfg), Path(cfg.output_dir), dry_run=dry_run, only=only, rerun=rerun, python=python,
                         runner=runner)
    if not dry_run:
        path = write_report(cfg, timings)
        print(f"[pipeline] report: {path}", flush=True)
    return timings


def run_stages(stages: Sequence[Stage], out_dir: Path, *, dry_run: bool = False, only: Sequence[str] | None = None,
               rerun: Sequence[str] | None = None, python: str = sys.executable,
               runner: Callable[[list[str]], int] | None = None) -> dict[str, Any]:
    """Run (or print) every stage of ``stages`` that is not complete, in order; the miniature pipeline and the
    paper plan (:mod:`neuronmoe.pipeline.paper_stages`) both run here. Returns the timings."""
    by_name = {s.name: s for s in stages}
    for flag, names in (("--only", only), ("--rerun", rerun)):
        unknown = [x for x in names or [] if x not in by_name]
        if unknown:
            raise ConfigError(f"{flag}: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(by_name)}")
    child_env = stage_environment()
    runner = runner or (lambda cmd: subprocess.call(cmd, env=child_env))
    timings_path = out_dir / "pipeline" / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    t_all = time.time()
    for s in stages:
        if only and s.name not in only:
            continue
        if s.name not in (rerun or []) and is_complete(s, by_name, out_dir):
            print(f"[pipeline] {s.name}: up to date, skipped", flush=True)
            timings.setdefault(s.name, {})["skipped_last"] = True
            continue
        argv = stage_argv(s, by_name, out_dir, forced=s.name in (rerun or []), record=not dry_run)
        cmd = [*(s.launch or [python, "-m", "neuronmoe"]), *argv]
        print(f"[pipeline] {s.name}: {shlex.join(cmd[1:] if s.launch is None else cmd)}", flush=True)
        if dry_run:
            continue
        timings[s.name] = run_stage(s, argv, cmd, runner, by_name, out_dir, timings, timings_path)
        atomic_write_json(timings_path, timings)
    if not dry_run:
        timings["_last_run_seconds"] = round(time.time() - t_all, 1)
        atomic_write_json(timings_path, timings)
    return timings


def stage_argv(s: Stage, by_name: dict[str, Stage], out_dir: Path, forced: bool, record: bool) -> list[str]:
    """The stage's arguments; a training stage resumes only a run started with these very inputs
    (``--resume``), anything else starts afresh (``--overwrite``). An evaluation (kind ``eval``) started with the
    same inputs continues its finished cells; one whose inputs changed replaces them (``--overwrite``)."""
    argv = list(s.argv)
    if s.kind not in ("train", "eval"):
        return argv
    run_dir = out_dir / s.marker.rsplit("/", 1)[0]
    started = out_dir / "pipeline" / "started" / f"{s.name}.json"
    fp = fingerprint(s, by_name, out_dir)
    same = started.exists() and json.loads(started.read_text()).get("fingerprint") == fp
    fresh = forced or (out_dir / s.marker).exists() or not same
    if fresh and run_dir.exists():
        argv.append("--overwrite")
    elif s.kind == "train":
        argv.append("--resume")
    if record:
        atomic_write_json(started, {"fingerprint": fp})
    return argv


def run_stage(s: Stage, argv: list[str], cmd: list[str], runner: Callable[[list[str]], int], by_name: dict[str, Stage],
              out_dir: Path, timings: dict[str, Any], timings_path: Path) -> dict[str, Any]:
    """Run one stage; record its fingerprint when it finished and wrote its marker."""
    t0 = time.time()
    rc = runner(cmd)
    dt = time.time() - t0
    if rc != 0:
        timings[s.name] = {"seconds": round(dt, 1), "failed": True, "rc": rc}
        atomic_write_json(timings_path, timings)
        raise StageFailedError(f"stage {s.name} failed (exit status {rc}; its error is above); fix the cause and "
                               f"run the same pipeline command again: complete stages are skipped and it resumes at "
                               f"{s.name}" + (" from its last checkpoint" if s.kind == "train" else ""))
    if not (out_dir / s.marker).exists():
        raise StageFailedError(f"stage {s.name} finished but did not write {out_dir / s.marker}; run the same "
                               f"pipeline command again to redo it")
    atomic_write_json(state_path(out_dir, s.name), {"fingerprint": fingerprint(s, by_name, out_dir), "argv": argv,
                                                      "seconds": round(dt, 1),
                                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return {"seconds": round(dt, 1), "skipped_last": False}
