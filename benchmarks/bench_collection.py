"""Activation collection overhead: forward passes with every hook vs the same passes without hooks.

    .venv/bin/python benchmarks/bench_collection.py [--model smollm2-135m] [--batch-size 8] [--batches 6]

Runs the same padded batches (batch 8, real sentences of the bundled corpus or random ids)
through the decoder three ways, interleaved and repeated, and reports the ratio of medians:
no hooks; every projection hooked with on-device pooling (what ``neuronmoe neurons`` does);
and, for reference, the published code's way (every hooked output copied to the CPU in fp32).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch


def make_batches(a: argparse.Namespace, vocab_size: int) -> list:
    """``a.batches`` random batches of ``a.batch_size`` x ``a.seq_len`` ids, right-padded to varied lengths."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(a.batches):
        ids = torch.randint(10, vocab_size - 1, (a.batch_size, a.seq_len), generator=g)
        att = torch.ones_like(ids)
        for j in range(a.batch_size):  # varied lengths -> right padding as in the real run
            att[j, a.seq_len - j * (a.seq_len // (2 * a.batch_size)) :] = 0
        batches.append((ids, att))
    return batches


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="model alias or folder")
    ap.add_argument("--dtype", default="bfloat16", help="compute dtype")
    ap.add_argument("--batch-size", type=int, default=8, help="sentences per batch")
    ap.add_argument("--seq-len", type=int, default=64, help="tokens per sentence (random ids)")
    ap.add_argument("--batches", type=int, default=4, help="batches per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(a.threads)
    from neuronmoe.models import load_model
    from neuronmoe.neuron_analysis.collect import _hook_targets, _Pooler
    from neuronmoe.neuron_analysis.units import UnitLayout

    model = load_model(a.model, dtype=a.dtype, device="cpu")
    layout = UnitLayout.for_model(model.config)
    runner = model.get_decoder()
    batches = make_batches(a, int(model.config.vocab_size))
    targets = _hook_targets(model, layout)
    pooler = _Pooler("mean", layout.total, torch.device("cpu"))
    sink: list = []

    def cpu_copy_hook(_m, _i, out):  # the published code: every output to the CPU in fp32
        sink.append(out.detach().float().cpu().numpy().copy())

    def run(mode: str) -> float:
        handles = []
        if mode == "pooled":
            handles = [m.register_forward_hook(pooler.hook(off, w)) for (_l, _n, m, off, w) in targets]
        elif mode == "cpu_copy":
            handles = [m.register_forward_hook(cpu_copy_hook) for (_l, _n, m, _o, _w) in targets]
        t = time.perf_counter()
        with torch.inference_mode():
            for ids, att in batches:
                if mode == "pooled":
                    pooler.start(att)
                runner(input_ids=ids, attention_mask=att, use_cache=False)
                if mode == "pooled":
                    pooler.buf.to(torch.float16).cpu()
                sink.clear()
        dt = time.perf_counter() - t
        for h in handles:
            h.remove()
        return dt

    run("none")  # warm-up
    times: dict[str, list[float]] = {"none": [], "pooled": [], "cpu_copy": []}
    for _ in range(a.rounds):
        for mode in times:
            times[mode].append(run(mode))
    med = {k: statistics.median(v) for k, v in times.items()}
    toks = a.batches * a.batch_size * a.seq_len
    print(f"model={a.model} dtype={a.dtype} batch={a.batch_size}x{a.seq_len} hooks={len(targets)} units={layout.total} threads={a.threads}")
    for k, v in med.items():
        print(f"  {k:9s} median {v:7.3f}s  {toks / v:8.0f} tok/s  ratio to no hooks {v / med['none']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
