"""AP for L languages on an N x U matrix: vectorised vs one torch.sort vs sklearn's per-pair loop.

    .venv/bin/python benchmarks/bench_ap.py [--n 4500] [--units 4000] [--langs 9] [--sk-units 40]

All timings in one run, side by side. Scores are fp16-rounded normal draws (the stored
activation format, so ties occur). sklearn's loop over (unit, language) pairs is timed on
``--sk-units`` units and extrapolated linearly to all units (it is linear in the unit count);
results are compared on those units. Peak memory of the AP step: the growth of the peak RSS
(VmHWM, reset through /proc/self/clear_refs just before) while the AP runs alone in a fresh
subprocess over an fp16 memmap of the matrix, for two chunk sizes: growth that follows the
chunk size, not N x U x 8 bytes, shows the bound (Linux only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def _data(n: int, u: int, langs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(langs), -(-n // langs))[:n]
    scores = rng.standard_normal((n, u)).astype(np.float16)
    scores[:, : u // 2] += (labels[:, None] == (np.arange(u // 2) % langs)[None, :]) * np.float16(0.5)
    return scores, labels


def _peak(args, scores: np.ndarray, labels: np.ndarray) -> dict:
    """Run the AP step alone in a fresh subprocess over an fp16 memmap; its max-RSS growth in MiB."""
    import tempfile

    d = tempfile.mkdtemp(prefix="bench_ap_")
    np.save(f"{d}/s.npy", scores)
    np.save(f"{d}/l.npy", labels)
    code = (
        "import sys,re,numpy as np,torch;"
        f"torch.set_num_threads({args.threads});"
        "from neuronmoe.neuron_analysis import average_precision;"
        f"s=np.load('{d}/s.npy',mmap_mode='r');l=np.load('{d}/l.npy');"
        "average_precision(s[:, :8],l);"  # warm-up: imports, allocator
        "st=lambda k: int(re.search(k+r':\\s+(\\d+)',open('/proc/self/status').read()).group(1));"
        "open('/proc/self/clear_refs','w').write('5');"  # reset the peak (VmHWM) to the current RSS
        "r0=st('VmRSS');"
        "average_precision(s,l,max_chunk_bytes=int(sys.argv[1])<<20);"
        "print((st('VmHWM')-r0)/1024)"
    )
    out = {}
    for mb in (args.chunk_mb, args.chunk_mb * 4):
        r = subprocess.run([sys.executable, "-c", code, str(mb)], capture_output=True, text=True, check=True)
        out[mb] = round(float(r.stdout.strip().splitlines()[-1]), 1)
    import shutil

    shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4500, help="samples (500 x 9 languages)")
    ap.add_argument("--units", type=int, default=4000, help="units")
    ap.add_argument("--langs", type=int, default=9, help="languages")
    ap.add_argument("--sk-units", type=int, default=40, help="units timed with sklearn, extrapolated")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the torch timings (median)")
    ap.add_argument("--chunk-mb", type=int, default=64, help="max_chunk_bytes for the memory measurement")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--device", default="cpu", help="device of the sort and the AP (cpu, cuda, ...); the matrix is moved there first")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sklearn.metrics import average_precision_score

    from neuronmoe.neuron_analysis import average_precision

    scores, labels = _data(args.n, args.units, args.langs)
    dev = torch.device(args.device)
    x = torch.from_numpy(scores.astype(np.float32)).to(dev)
    xs = torch.from_numpy(scores).to(dev)  # the stored fp16 activations, on the device
    lab = torch.from_numpy(labels).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    t_sort, t_ap = [], []
    for _ in range(args.repeats + (1 if dev.type == "cuda" else 0)):  # interleaved; one warm-up on a GPU
        sync()
        t = time.perf_counter()
        torch.sort(x.t().contiguous(), dim=1, descending=True)
        sync()
        t_sort.append(time.perf_counter() - t)
        t = time.perf_counter()
        res = average_precision(scores, labels) if dev.type == "cpu" else average_precision(xs, lab, device=dev)
        sync()
        t_ap.append(time.perf_counter() - t)
    if dev.type == "cuda":
        t_sort, t_ap = t_sort[1:], t_ap[1:]
    res = res.cpu().numpy() if isinstance(res, torch.Tensor) else res
    k = args.sk_units
    t = time.perf_counter()
    ref = np.array([[average_precision_score(labels == lang, scores[:, u]) for lang in range(args.langs)] for u in range(k)])
    t_sk = (time.perf_counter() - t) * args.units / k
    err = float(np.abs(res[:k] - ref).max())
    peak = _peak(args, scores, labels) if dev.type == "cpu" else {}
    cell = args.n * args.units * 8 / 2**20
    out = {
        "n": args.n, "units": args.units, "langs": args.langs, "threads": args.threads, "device": str(dev),
        "torch_sort_s": statistics.median(t_sort), "ap_s": statistics.median(t_ap),
        "ap_over_sort": statistics.median(t_ap) / statistics.median(t_sort),
        "sklearn_loop_s_extrapolated": t_sk, "sklearn_units_timed": k,
        "speedup_vs_sklearn": t_sk / statistics.median(t_ap), "max_abs_diff_vs_sklearn": err,
        "peak_rss_growth_mib_by_chunk_mb": peak, "n_x_u_x_8_mib": cell,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
