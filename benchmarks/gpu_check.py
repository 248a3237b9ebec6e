"""Every GPU check of docs/benchmarks.md in one run, one JSON file (issue 22). Under 8 minutes on one H100/H200.

    bash benchmarks/gpu_check.sh OUT_DIR            # on a GPU (--device cuda)
    bash benchmarks/gpu_check.sh OUT_DIR --tiny     # anywhere, CPU: the same code paths at toy sizes

Checks, each in its own process (a fresh CUDA context, so every peak is its own), each bounded in time:

* ``moe_throughput``: ``bench_moe.py gpu``: tokens/s and MFU of a forward+backward on the Llama-3.2-3B shape with
  Table 2's NeuronMoE allocation (49 experts), bf16, 4 x 1,024 tokens. ``mfu_needed_flops`` is the MFU the budget
  uses (FLOPs the run needs: neuronmoe.budget.flops);
* ``ap``: ``bench_ap.py --device cuda``: AP of 9 languages on a 4,500 x 4,000 matrix against one torch.sort and
  sklearn;
* ``neuron_stage``: ``neuronmoe neurons`` on a random-weight Llama-3.2-3B-shaped model, 9 languages x 500 sentences
  (the paper: about 6 GPU-minutes per language with the published code);
* ``stage1_step``: four stage-1 optimizer steps as ``neuronmoe train`` runs them on one GPU without DeepSpeed (fp32
  weights, bf16 autocast, AdamW) at the paper plan's per-device batch (4 x 1,024 tokens at 8 GPUs), NeuronMoE's 49
  experts: the peak memory after the first step beside ``neuronmoe.budget.memory``'s estimate, and the MFU of a
  whole step (the figure the budget uses: ``summary.mfu_for_budget``).

The JSON (``OUT_DIR/gpu_check.json``) holds every check's result or its error, the card, and ``summary``: the MFU to
record in neuronmoe/configs/budget.yaml ``measured_mfu`` and the measured / estimated peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GREEK_49 = [6, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 4, 1, 4, 2, 2, 4, 4]
CHECKS = ("moe_throughput", "ap", "neuron_stage", "stage1_step")


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd`` (seconds, last lines of its output); a non-zero exit raises with the tail."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, timeout),
                       env={**os.environ, **(env or {})})
    tail = (r.stdout + r.stderr)[-3000:]
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {' '.join(cmd[:4])} ...: {tail}")
    return time.perf_counter() - t0, tail


def check_moe(a: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    out = work / "bench_moe.json"
    small = ["--layers", "2", "--hidden", "128", "--intermediate", "256", "--allocation", "[6,2]", "--batch", "2",
             "--seq", "32", "--steps", "2", "--warmup", "1", "--dtype", "float32"] if a.tiny else []
    _run([sys.executable, "benchmarks/bench_moe.py", "gpu", "--device", a.device, *small, "--out", str(out)], timeout)
    return json.loads(out.read_text())["gpu"]


def check_ap(a: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    out = work / "bench_ap.json"
    small = ["--n", "450", "--units", "400", "--sk-units", "4", "--repeats", "1"] if a.tiny else []
    _run([sys.executable, "benchmarks/bench_ap.py", "--device", a.device, *small, "--json", str(out)], timeout)
    return json.loads(out.read_text())


def random_model(a: argparse.Namespace, work: Path, timeout: float) -> tuple[Path, str]:
    """A random-weight model of the check's shape and the tokenizer it carries (SmolLM2's when it is cached or
    installed, else the byte tokenizer of neuronmoe.testing: sentences are then about 4 times longer)."""
    path = work / "model"
    if a.tiny:
        from neuronmoe.testing import save_tiny_model

        save_tiny_model(path, "llama")
        return path, "byte tokenizer (tiny)"
    cmd = [sys.executable, "-m", "neuronmoe", "model", "random", "llama-3.2-3b", "--out", str(path)]
    try:
        _run(cmd, timeout)
        return path, "smollm2-135m"
    except RuntimeError:
        from neuronmoe.testing import byte_tokenizer

        byte_tokenizer().save_pretrained(work / "byte-tokenizer")
        _run([*cmd, "--tokenizer", str(work / "byte-tokenizer")], timeout)
        return path, "byte tokenizer (SmolLM2's was not available)"


def check_neurons(a: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, tokenizer = random_model(a, work, timeout)
    langs = "en,zh,es,el,tr,hu,de,fr,ja"
    n = "20" if a.tiny else "500"
    out = work / "neurons-run"
    prep_s, _ = _run([sys.executable, "-m", "neuronmoe", "prepare-data", "--model", str(model), "--output-dir", str(out),
                      "--new-langs", "el,tr,hu", "--old-langs", "en,zh,es", "--neg-langs", "de,fr,ja", "--num-sentences", n],
                     timeout - (time.perf_counter() - t0))
    stage_s, tail = _run([sys.executable, "-m", "neuronmoe", "neurons", "--model", str(model), "--output-dir", str(out),
                          "--languages", langs, "--device", a.device, "--no-progress"], timeout - (time.perf_counter() - t0))
    man = json.loads((out / "neurons" / "manifest.json").read_text())
    return {"languages": 9, "sentences_per_language": int(n), "tokenizer": tokenizer, "prepare_data_s": prep_s,
            "neurons_s": stage_s, "gpu_minutes_per_language": stage_s / 60 / 9, "paper_gpu_minutes_per_language": 6,
            "counts": man.get("counts"), "timings": man.get("timings") or man.get("extra", {}).get("timings")}


def check_step(a: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    out = work / "stage1_step.json"
    _run([sys.executable, "benchmarks/gpu_check.py", "step", "--device", a.device, "--out", str(out),
          *(["--tiny"] if a.tiny else [])], timeout)
    return json.loads(out.read_text())


def stage1_step(device: str, tiny: bool) -> dict[str, Any]:
    """Two stage-1 steps (fp32 weights, bf16 autocast, AdamW) and the peak of the second beside the estimate."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401 - registers the PEFT method
    from neuronmoe.budget.flops import shape_of
    from neuronmoe.budget.memory import activation_memory, model_facts, param_counts, static_memory
    from neuronmoe.models import load_config
    from neuronmoe.moe import MoEConfig
    from neuronmoe.testing import tiny_config

    dev = torch.device(device)
    cfg = tiny_config("llama") if tiny else load_config("llama-3.2-3b")
    epl, batch, seq = ([3, 1, 2], 2, 32) if tiny else (GREEK_49, 4, 1024)
    torch.manual_seed(0)
    with torch.device(dev):
        base = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=epl, top_k=2, train_mode="experts"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq), device=dev)
    autocast = dev.type == "cuda"
    times = []
    for i in range(2 if tiny else 4):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            if i == 1:
                torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, labels=ids)
            loss = out.loss + out.moe_loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    static = static_memory(param_counts(model_facts(cfg), epl, "experts"), "torch", 1, 0, autocast=autocast)
    act = activation_memory(shape_of(cfg), epl, 2, batch * seq, False, 4)
    est = sum(static.values()) + act["total"]
    res: dict[str, Any] = {"experts_per_layer": epl, "batch": batch, "seq": seq, "autocast_bf16": autocast,
                           "step_seconds": times, "estimate_gib": est / 2**30, "estimate_static_gib": sum(static.values()) / 2**30,
                           "estimate_activations_gib": act["total"] / 2**30}
    if dev.type == "cuda":
        from neuronmoe.budget.flops import training_flops_per_token
        from neuronmoe.budget.gpus import peak_tflops_of_device

        peak = torch.cuda.max_memory_allocated(dev)
        res.update(peak_gib=peak / 2**30, peak_over_estimate=peak / est)
        tflops = peak_tflops_of_device(torch.cuda.get_device_name(dev))
        sec = sorted(times[1:])[len(times[1:]) // 2]  # the median step after the first
        flops = training_flops_per_token(shape_of(cfg), epl, 2, seq, "experts")["total"] * batch * seq
        res.update(step_seconds_median=sec, peak_tflops=tflops, mfu=flops / sec / 1e12 / tflops if tflops else None)
    return res


def machine(device: str) -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if device.startswith("cuda") and torch.cuda.is_available():
        from neuronmoe.budget.gpus import card_of_device

        info["gpu"] = torch.cuda.get_device_name(0)
        info["card"] = card_of_device(info["gpu"])
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


def summary(results: dict[str, Any]) -> dict[str, Any]:
    moe, step = results.get("moe_throughput") or {}, results.get("stage1_step") or {}
    # the budget's MFU: a whole training step as `neuronmoe train` runs it on one GPU (fp32 weights, bf16 autocast,
    # AdamW) when measured, else bench_moe's forward+backward in bf16 (an upper bound: no optimizer, bf16 weights)
    return {"mfu_for_budget": step.get("mfu") or moe.get("mfu_needed_flops"),
            "mfu_source": "stage1_step" if step.get("mfu") else ("moe_throughput" if moe.get("mfu_needed_flops") else None),
            "mfu_bench_moe": moe.get("mfu_needed_flops"), "mfu_palm_style": moe.get("mfu"),
            "tokens_per_s": moe.get("tokens_per_s"), "peak_gib": step.get("peak_gib"),
            "estimate_gib": step.get("estimate_gib"), "peak_over_estimate": step.get("peak_over_estimate"),
            "neuron_stage_gpu_minutes_per_language": (results.get("neuron_stage") or {}).get("gpu_minutes_per_language")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode")
    run = sub.add_parser("run", help="every check, one JSON file")
    run.add_argument("--out-dir", required=True, help="folder for gpu_check.json (and the checks' own files)")
    run.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (tests the code paths anywhere)")
    run.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    run.add_argument("--budget-s", type=float, default=450.0, help="time for all checks; a check that starts later is skipped")
    run.add_argument("--only", default=None, help="comma list of checks (default all: " + ", ".join(CHECKS) + ")")
    step = sub.add_parser("step", help="(internal) the stage-1 step check in its own process")
    step.add_argument("--device", default="cuda")
    step.add_argument("--tiny", action="store_true")
    step.add_argument("--out", required=True)
    a = ap.parse_args(argv if argv is not None else (sys.argv[1:] if sys.argv[1:2] in (["run"], ["step"]) else ["run", *sys.argv[1:]]))
    if a.mode == "step":
        Path(a.out).write_text(json.dumps(stage1_step(a.device, a.tiny), indent=2))
        return 0
    a.device = a.device or ("cpu" if a.tiny else "cuda")
    return run_all(a)


def run_all(a: argparse.Namespace) -> int:
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run with --tiny on a CPU")
    out_dir = Path(a.out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    fns = {"moe_throughput": check_moe, "ap": check_ap, "neuron_stage": check_neurons, "stage1_step": check_step}
    wanted = [c for c in (a.only.split(",") if a.only else CHECKS)]
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in wanted:
        left = a.budget_s - (time.perf_counter() - t_start)
        if left < 20:
            errors[name] = f"skipped: {a.budget_s:g} s budget spent"
            continue
        t0 = time.perf_counter()
        try:
            results[name] = fns[name](a, work, left)
        except Exception as e:  # noqa: BLE001 - one failed check must not lose the others
            errors[name] = f"{type(e).__name__}: {e}"[-2000:]
        seconds[name] = time.perf_counter() - t0
    doc = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": a.tiny, "machine": machine(a.device), "results": results,
           "errors": errors, "seconds": seconds, "total_seconds": time.perf_counter() - t_start, "summary": summary(results)}
    from neuronmoe.utils import atomic_write_text

    atomic_write_text(out_dir / "gpu_check.json", json.dumps(doc, indent=2, default=str) + "\n")
    print(json.dumps({"summary": doc["summary"], "errors": errors, "seconds": seconds}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
