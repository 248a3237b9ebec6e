"""CLI start-up and export cost, each against its obvious baseline.

    .venv/bin/python benchmarks/bench_interop.py start [--runs 7]
    .venv/bin/python benchmarks/bench_interop.py export [--model smollm2-135m]

``start``: wall and CPU time of ``neuronmoe --help`` against a bare interpreter (``python -c pass``)
and against what ``import neuronmoe`` cost before registration became lazy (``import
neuronmoe.moe``: torch, transformers, peft). Runs are interleaved; medians are reported.

``export``: wall time and peak RSS of ``neuronmoe export`` (load base + adapter, merge, write)
against loading base + adapter and running one 3-token forward (which touches every weight; the
loaded safetensors may stay mmapped, so loading alone can show a small RSS), each in a fresh
process; the adapter has 3 new experts (MoE in the first and last layers). The ratio of peak RSS
shows whether the merge copies weights.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024  # ru_maxrss: KiB on Linux, max over children so far


def start(runs: int) -> None:
    exe = shutil.which("neuronmoe") or f"{sys.executable} -m neuronmoe"
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "neuronmoe --help": exe.split() + ["--help"],
        "import neuronmoe.moe (old start)": [sys.executable, "-c", "import neuronmoe.moe"],
    }
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cmds}
    for _ in range(runs):
        for k, c in cmds.items():
            res[k].append(_run(c))
    med = {k: (statistics.median(w for w, _, _ in v), statistics.median(c for _, c, _ in v)) for k, v in res.items()}
    print(f"load average {os.getloadavg()[0]:.2f}, {runs} interleaved runs, medians")
    for k, (w, c) in med.items():
        print(f"{k:34s} wall {w:6.3f} s   cpu {c:6.3f} s")
    h, b, o = med["neuronmoe --help"], med["python -c pass"], med["import neuronmoe.moe (old start)"]
    print(f"neuronmoe --help / bare interpreter: wall x{h[0] / b[0]:.1f}; old start / neuronmoe --help: wall x{o[0] / h[0]:.1f}")


def export(model: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    try:
        make = textwrap.dedent(f"""
            import torch, peft, neuronmoe
            from neuronmoe.models import load_model
            from neuronmoe.moe import MoEConfig
            base = load_model({model!r}, dtype=torch.float32, device='cpu')
            n = base.config.num_hidden_layers
            m = peft.get_peft_model(base, MoEConfig(experts_per_layer=[3] + [1] * (n - 2) + [2]))
            m.save_pretrained({str(tmp / 'adapter')!r})
        """)
        subprocess.run([sys.executable, "-c", make], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = textwrap.dedent(f"""
            import torch, peft, neuronmoe
            from neuronmoe.models import load_model
            base = load_model({model!r}, dtype=torch.float32, device='cpu')
            m = peft.PeftModel.from_pretrained(base, {str(tmp / 'adapter')!r})
            with torch.no_grad():
                m(input_ids=torch.tensor([[1, 2, 3]]))  # touches every weight (they may be mmapped until used)
        """)
        # peak RSS is a max over finished children: measure each in a process of its own
        probe = [sys.executable, __file__, "_child"]
        lw, _, lrss = _measure(probe + [sys.executable, "-c", load], env)
        ew, _, erss = _measure(probe + [sys.executable, "-m", "neuronmoe", "export", "--adapter", str(tmp / "adapter"),
                                        "--out", str(tmp / "out"), "--model", model], env)
        size = sum(f.stat().st_size for f in (tmp / "out").iterdir() if f.suffix == ".safetensors") / 2**20
        print(f"load average {os.getloadavg()[0]:.2f}; model {model}, export fp32, weights written {size:.0f} MiB")
        print(f"load + 1 forward    : wall {lw:6.1f} s   peak RSS {lrss:7.0f} MiB")
        print(f"neuronmoe export    : wall {ew:6.1f} s   peak RSS {erss:7.0f} MiB")
        print(f"export / load: wall x{ew / lw:.2f}, peak RSS x{erss / lrss:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(cmd: list[str], env: dict) -> tuple[float, float, float]:
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout.split()
    return float(out[-3]), float(out[-2]), float(out[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:  # run one command, print its wall, CPU and peak RSS
        print(*_run(argv[1:], dict(os.environ)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["start", "export"], help="start: CLI start-up; export: neuronmoe export cost")
    ap.add_argument("--runs", type=int, default=7, help="start: interleaved runs per command")
    ap.add_argument("--model", default="smollm2-135m", help="export: base model alias or folder")
    a = ap.parse_args(argv)
    start(a.runs) if a.what == "start" else export(a.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
