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
    runner = runner or StageRunner(stage_environment())
    timings_path = out_dir / "pipeline" / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not dry_run and isinstance(runner, StageRunner):
        timings["_machine"] = machine_record()
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
        if isinstance(runner, StageRunner):
            runner.work_file = out_dir / "pipeline" / "work" / f"{s.name}.json"
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
    usage = stage_usage(runner, dt)
    if rc != 0:
        timings[s.name] = {"seconds": round(dt, 1), "failed": True, "rc": rc, **usage}
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
    return {"seconds": round(dt, 1), "skipped_last": False, **usage}


# ------------------------------------------------------------------------------------- accounting
class StageRunner:
    """The default runner: one stage process with the stages' environment, its token and FLOP counts written to
    ``work_file`` (``$NEURONMOE_WORK_FILE``, :mod:`neuronmoe.utils.work`), and its CPU time and peak RSS read from
    the kernel when it exits (``wait4``). Linux starts a child's ``ru_maxrss`` at its parent's RSS at fork (the
    exec'd child keeps the forked image's high-water mark), so a small stage would report the pipeline process's
    size: :func:`stage_usage` takes the peak the stage measured itself (``VmHWM``) when the work file has it."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.work_file: Path | None = None
        self.usage: dict[str, Any] = {}

    def __call__(self, cmd: list[str]) -> int:
        from neuronmoe.utils.work import ENV

        env = dict(self.env)
        self.usage = {}
        if self.work_file is not None:
            self.work_file.unlink(missing_ok=True)
            env[ENV] = str(self.work_file)
        proc = subprocess.Popen(cmd, env=env)
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.usage = {"cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}
        return proc.returncode


def stage_usage(runner: Any, seconds: float) -> dict[str, Any]:
    """CPU time, peak RSS (from :class:`StageRunner`) and the stage's token/FLOP counts with its achieved rate."""
    if not isinstance(runner, StageRunner):
        return {}
    out = dict(runner.usage)
    wf = runner.work_file
    if wf is not None and wf.exists():
        try:
            work = json.loads(wf.read_text())
        except (OSError, json.JSONDecodeError):
            work = {}
        out.update({k: work.get(k) for k in ("tokens_forward", "tokens_backward", "positions_forward", "flops", "dtype",
                                             "device", "threads", "native_bf16")})
        if work.get("flops") and seconds > 0:
            out["flops_per_s"] = work["flops"] / seconds
        if work.get("peak_rss_mb"):  # the process's own high-water mark (wait4's inherits the pipeline's at fork)
            out["peak_rss_mb"] = work["peak_rss_mb"]
    return out


def machine_record() -> dict[str, Any]:
    """The matmul calibration of this machine (cached, :func:`neuronmoe.utils.work.matmul_rate`) and whether it computes
    bf16 natively; every stage's FLOP/s is compared with the rate of the dtype it ran in (``rates``: fp32, and bf16
    where it is native). ``{"error": ...}`` if torch cannot measure here."""
    try:
        from neuronmoe.utils.work import matmul_rate

        rec = matmul_rate()
        rates = {rec["key"]["dtype"]: rec["flops_per_s"]}
        if rec.get("native_bf16") and "bfloat16" not in rates:  # the stages that run bf16 are compared with this one
            rates["bfloat16"] = matmul_rate(dtype="bfloat16")["flops_per_s"]
        return {**rec, "rates": rates}
    except Exception as e:  # noqa: BLE001 - the run goes on without the ratio column
        return {"error": f"{type(e).__name__}: {e}"}
