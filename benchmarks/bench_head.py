"""The output head on a sliced input (``logits_to_keep``), frozen weight, with and without the contiguous copy.

    .venv/bin/python benchmarks/bench_head.py [--vocab 49152] [--hidden 576] [--rows 8] [--seq 60] [--reps 5]

Side by side in one process: ``Linear(hidden, vocab)`` applied to ``hidden_states[:, -k:, :]`` of a
``[rows, seq, hidden]`` tensor, as transformers' ``logits_to_keep`` does, for a weight that requires grad (a plain
loaded model) and a frozen one (every base weight once a PEFT adapter is loaded), each plain and after
``neuronmoe.models.fastpath``'s contiguous copy; fp32 and bf16. Prints ms per call, the ratio plain / copied,
the largest difference of the outputs (0: the copy changes nothing) and the CPU flags that decide the bf16 path.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def _cpu_flags() -> list[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have)
    except OSError:
        pass
    return []


def _ms(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=49152, help="output size (SmolLM2: 49152)")
    ap.add_argument("--hidden", type=int, default=576, help="input size (SmolLM2: 576)")
    ap.add_argument("--rows", type=int, default=8, help="batch rows")
    ap.add_argument("--seq", type=int, default=60, help="positions per row before slicing")
    ap.add_argument("--keep", default="1,10", help="positions kept (comma separated), as logits_to_keep")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per case")
    a = ap.parse_args(argv)
    rows = []
    for dt in (torch.float32, torch.bfloat16):
        for frozen in (False, True):
            head = torch.nn.Linear(a.hidden, a.vocab, bias=False).to(dt).requires_grad_(not frozen)
            for k in (int(x) for x in a.keep.split(",")):
                x = torch.randn(a.rows, a.seq, a.hidden, dtype=dt)[:, -k:, :]
                with torch.no_grad():
                    diff = float((head(x) - head(x.contiguous())).abs().max())
                    plain = _ms(lambda: head(x), a.reps)  # noqa: B023 - called at once
                    copied = _ms(lambda: head(x.contiguous()), a.reps)  # noqa: B023
                rows.append({"dtype": str(dt).split(".")[-1], "weight": "frozen" if frozen else "requires grad",
                             "keep": k, "plain_ms": round(plain, 2), "copied_ms": round(copied, 2),
                             "ratio": round(plain / copied, 1), "max_abs_diff": diff})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_flags": _cpu_flags(),
                      "shape": [a.rows, a.seq, a.hidden], "vocab": a.vocab}))
    print("| dtype | weight | keep | sliced ms | copied ms | sliced / copied | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {r['weight']} | {r['keep']} | {r['plain_ms']} | {r['copied_ms']} | {r['ratio']} | {r['max_abs_diff']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
