"""Benchmarks of the NeuronMoE adapter (docs/benchmarks.md records the results).

``cpu`` (default): two side-by-side measurements in one run.
  1. model: forward+backward time of the adapted model / the dense model at the same batch,
     compared with the FLOP ratio that top-k routing implies for the allocation
     (MoE layers run k MLPs per token + a router). Goal: measured / FLOP ratio <= 1.25.
  2. layer: one MoE layer, sparse dispatch vs a naive loop computing every expert on every
     token (masked dense combination), forward+backward, for E = 2, 4, 8, 16.

``gpu``: tokens/s and MFU of a training forward+backward (bf16) of a Llama-3.2-3B-shaped model
(random init, shipped config) with Table 2's NeuronMoE allocation for Greek (49 experts).
Run it as ``python benchmarks/bench_moe.py gpu --device cuda``; with ``--device cpu`` and small
``--layers/--hidden/--intermediate`` overrides it is a smoke test of the same code path.

Every run prints one JSON object (and writes it to ``--out`` when given).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

import neuronmoe  # noqa: E402,F401  (registers the PEFT method)
from neuronmoe.moe import MoEConfig, naive_dispatch, route, sparse_dispatch  # noqa: E402

#: Table 2, NeuronMoE allocation for Greek on Llama-3.2-3B (28 layers, 49 experts; layer 16 has 2)
GREEK_49 = [6, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 4, 1, 4, 2, 2, 4, 4]

# ---------------------------------------------------------------------------------------------
# FLOP model: neuronmoe.budget.flops (the one the paper plan's budget uses, so the two cannot drift)
# ---------------------------------------------------------------------------------------------
def forward_flops_per_token(cfg: Any, experts_per_layer: list[int] | None, top_k: int, seq: int) -> dict[str, float]:
    """Matmul FLOPs of one token's forward pass (:func:`neuronmoe.budget.flops.forward_flops_per_token`)."""
    from neuronmoe.budget.flops import forward_flops_per_token as fwd
    from neuronmoe.budget.flops import shape_of

    return fwd(shape_of(cfg), experts_per_layer, top_k, seq)


def flop_counts(cfg: Any, experts_per_layer: list[int], top_k: int, seq: int, train_mode: str = "experts") -> dict[str, float]:
    """Per token: ``model`` (3 x forward, PaLM-style MFU) and ``needed`` (what the run computes: the frozen base
    takes no weight gradient; :func:`neuronmoe.budget.flops.training_flops_per_token`)."""
    from neuronmoe.budget.flops import model_flops_per_token, shape_of, training_flops_per_token

    shape = shape_of(cfg)
    return {"model": model_flops_per_token(shape, experts_per_layer, top_k, seq),
            "needed": training_flops_per_token(shape, experts_per_layer, top_k, seq, train_mode)["total"]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int,
                 device: torch.device) -> dict[str, dict[str, float]]:
    """Min and median seconds of each function, measured round-robin so that load drifts hit all alike.

    Ratios use the minimum (the least-disturbed repetition), which is the stable statistic on a
    shared machine; medians are recorded beside them.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(_time(fn, device))
    return {k: {"min": min(v), "median": statistics.median(v)} for k, v in times.items()}


def _machine(device: torch.device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "device": str(device)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _llama_config(hidden: int, intermediate: int, layers: int, vocab: int, heads: int):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=heads, vocab_size=vocab,
                       max_position_embeddings=4096, tie_word_embeddings=False)


# ---------------------------------------------------------------------------------------------
# cpu: model ratio + layer sparse-vs-naive
# ---------------------------------------------------------------------------------------------
def bench_model(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import peft
    from transformers import AutoModelForCausalLM

    cfg = _llama_config(args.hidden, args.intermediate, args.layers, args.vocab, args.heads)
    epl = _parse_allocation(args.allocation, args.layers)
    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).to(device)
    torch.manual_seed(0)
    moe = peft.get_peft_model(AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).to(device),
                              MoEConfig(experts_per_layer=epl, top_k=args.top_k))
    # every weight gets a gradient in both models, so backward = 2x forward FLOPs on both sides
    for m in (dense, moe):
        m.train()
        for p in m.parameters():
            p.requires_grad_(True)
    ids = torch.randint(3, args.vocab, (args.batch, args.seq), device=device)
    flags = torch.zeros_like(ids)
    flags[: args.batch // 2] = 1

    def step_dense():
        dense.zero_grad(set_to_none=True)
        dense(input_ids=ids, labels=ids).loss.backward()

    def step_moe():
        moe.zero_grad(set_to_none=True)
        out = moe(input_ids=ids, labels=ids, lang_flags=flags)
        (out.loss + out.moe_loss).backward()

    t = _interleaved({"dense": step_dense, "moe": step_moe}, args.reps, args.warmup, device)
    f_dense = forward_flops_per_token(cfg, None, args.top_k, args.seq)
    f_moe = forward_flops_per_token(cfg, epl, args.top_k, args.seq)
    flop_ratio = f_moe["total"] / f_dense["total"]
    time_ratio = t["moe"]["min"] / t["dense"]["min"]
    return {
        "shape": {"hidden": args.hidden, "intermediate": args.intermediate, "layers": args.layers,
                  "vocab": args.vocab, "batch": args.batch, "seq": args.seq},
        "experts_per_layer": epl, "top_k": args.top_k,
        "mlp_share_of_dense_flops": f_dense["mlp"] / f_dense["total"],
        "seconds": t, "time_ratio": time_ratio, "time_ratio_median": t["moe"]["median"] / t["dense"]["median"],
        "flop_ratio": flop_ratio,
        "time_over_flop_ratio": time_ratio / flop_ratio, "goal": "time_over_flop_ratio <= 1.25",
        "ok": time_ratio / flop_ratio <= 1.25,
    }


def bench_layer(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from transformers.models.llama.modeling_llama import LlamaMLP

    cfg = _llama_config(args.layer_hidden, args.layer_intermediate, 1, args.vocab, args.heads)
    n_tok = args.layer_tokens
    rows = []
    for num_experts in args.experts:
        torch.manual_seed(0)
        experts = [LlamaMLP(cfg).to(device) for _ in range(num_experts)]
        w_router = torch.nn.Parameter(torch.randn(num_experts, args.layer_hidden, device=device) * 0.02)
        x = torch.randn(n_tok, args.layer_hidden, device=device, requires_grad=True)
        k = min(args.top_k, num_experts)

        def step(fn, x=x, w_router=w_router, k=k, experts=experts):
            def run():
                x.grad = None
                _, _, w, idx = route(x, w_router, k)
                fn(x, idx, w, experts).sum().backward()
            return run

        t = _interleaved({"sparse": step(sparse_dispatch), "naive": step(naive_dispatch)},
                         args.layer_reps, 1, device)
        rows.append({"experts": num_experts, "top_k": k, "tokens": n_tok, "hidden": args.layer_hidden,
                     "intermediate": args.layer_intermediate, "seconds": t,
                     "speedup": t["naive"]["min"] / t["sparse"]["min"],
                     "speedup_median": t["naive"]["median"] / t["sparse"]["median"], "ideal_speedup": num_experts / k})
    return rows


# ---------------------------------------------------------------------------------------------
# gpu: tokens/s and MFU for the 3B-shaped model
# ---------------------------------------------------------------------------------------------
def bench_gpu(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import peft
    from transformers import AutoModelForCausalLM

    from neuronmoe.models import load_config
    from neuronmoe.utils.device import resolve_dtype

    cfg = load_config(args.model)
    for key, val in (("num_hidden_layers", args.layers), ("hidden_size", args.hidden),
                     ("intermediate_size", args.intermediate)):
        if val:
            setattr(cfg, key, val)
    if args.hidden:  # smoke-test shapes: keep head_dim, shrink the number of heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        head_dim = min(head_dim, args.hidden)
        cfg.num_attention_heads = cfg.num_key_value_heads = args.hidden // head_dim
        cfg.head_dim = head_dim
    epl = _parse_allocation(args.allocation, cfg.num_hidden_layers)
    dtype = resolve_dtype(args.dtype, device)
    torch.manual_seed(0)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model = peft.get_peft_model(base, MoEConfig(experts_per_layer=epl, top_k=args.top_k, train_mode="experts"))
    model.train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=device)
    flags = torch.zeros_like(ids)
    flags[: args.batch // 2] = 1

    def step():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids, lang_flags=flags, use_cache=False)
        (out.loss + out.moe_loss).backward()

    for _ in range(args.warmup):
        step()
    times = [_time(step, device) for _ in range(args.steps)]
    sec = statistics.median(times)
    tokens = args.batch * args.seq
    f = flop_counts(cfg, epl, args.top_k, args.seq, "experts")
    model_flops = f["model"] * tokens  # 3x forward (PaLM-style MFU, as if every weight took a gradient)
    hw_flops = f["needed"] * tokens  # what this run computes (neuronmoe.budget.flops: the budget's model)
    peak = args.peak_tflops
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if peak is None:
        from neuronmoe.budget.gpus import peak_tflops_of_device

        peak = peak_tflops_of_device(name)
    res = {
        "model": args.model, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
        "intermediate": cfg.intermediate_size, "experts_per_layer": epl, "total_experts": sum(epl),
        "top_k": args.top_k, "dtype": str(dtype), "batch": args.batch, "seq": args.seq,
        "gradient_checkpointing": args.gradient_checkpointing, "params_total": total, "params_trainable": trainable,
        "step_seconds_median": sec, "tokens_per_s": tokens / sec,
        "model_tflops_per_s": model_flops / sec / 1e12, "needed_tflops_per_s": hw_flops / sec / 1e12,
        "peak_tflops": peak,
    }
    if peak:
        res["mfu"] = model_flops / sec / 1e12 / peak
        res["mfu_needed_flops"] = hw_flops / sec / 1e12 / peak
    if device.type == "cuda":
        res["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def _parse_allocation(spec: str | None, n_layers: int) -> list[int]:
    if spec in (None, "", "greek49"):
        epl = list(GREEK_49)
    elif spec.strip().startswith("["):
        epl = [int(v) for v in json.loads(spec)]
    elif Path(spec).is_file():
        epl = MoEConfig.from_allocation(spec).experts_per_layer
    else:
        epl = [int(v) for v in spec.split(",")]
    if len(epl) != n_layers:
        raise SystemExit(f"--allocation has {len(epl)} layers but the model has {n_layers}")
    return epl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode")
    c = sub.add_parser("cpu", help="model time ratio vs FLOP ratio; layer sparse vs naive")
    c.add_argument("--hidden", type=int, default=512)
    c.add_argument("--intermediate", type=int, default=2048)
    c.add_argument("--layers", type=int, default=4)
    c.add_argument("--heads", type=int, default=8)
    c.add_argument("--vocab", type=int, default=1024)
    c.add_argument("--batch", type=int, default=4)
    c.add_argument("--seq", type=int, default=128)
    c.add_argument("--allocation", default="[4,1,8,2]", help="JSON list, comma list or allocation file")
    c.add_argument("--top-k", type=int, default=2)
    c.add_argument("--experts", type=int, nargs="+", default=[2, 4, 8, 16])
    c.add_argument("--layer-hidden", type=int, default=256)
    c.add_argument("--layer-intermediate", type=int, default=1024)
    c.add_argument("--layer-tokens", type=int, default=512)
    c.add_argument("--reps", type=int, default=5)
    c.add_argument("--layer-reps", type=int, default=4)
    c.add_argument("--warmup", type=int, default=1)
    c.add_argument("--threads", type=int, default=1, help="torch threads (1 = least sensitive to other load)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--skip-model", action="store_true")
    c.add_argument("--skip-layer", action="store_true")
    c.add_argument("--out")
    g = sub.add_parser("gpu", help="tokens/s and MFU, Llama-3.2-3B shape + Table 2 allocation")
    g.add_argument("--device", default="cuda")
    g.add_argument("--model", default="llama-3.2-3b")
    g.add_argument("--allocation", default="greek49")
    g.add_argument("--layers", type=int, help="override (smoke tests)")
    g.add_argument("--hidden", type=int, help="override (smoke tests)")
    g.add_argument("--intermediate", type=int, help="override (smoke tests)")
    g.add_argument("--top-k", type=int, default=2)
    g.add_argument("--dtype", default="bf16")
    g.add_argument("--batch", type=int, default=4)
    g.add_argument("--seq", type=int, default=1024)
    g.add_argument("--steps", type=int, default=10)
    g.add_argument("--warmup", type=int, default=3)
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--peak-tflops", type=float, help="device peak (default: looked up from the GPU name)")
    g.add_argument("--out")
    args = ap.parse_args(argv)
    if args.mode is None:
        args = ap.parse_args(["cpu", *(argv or sys.argv[1:])])
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    result: dict[str, Any] = {"mode": args.mode, "machine": _machine(device)}
    if args.mode == "cpu":
        torch.set_num_threads(args.threads)
        result["machine"]["threads"] = torch.get_num_threads()
        if not args.skip_model:
            result["model"] = bench_model(args, device)
        if not args.skip_layer:
            result["layer"] = bench_layer(args, device)
    else:
        result["gpu"] = bench_gpu(args, device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from neuronmoe.utils import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
