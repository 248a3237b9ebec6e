"""Data preparation and packing at scale: tokens/s and peak memory, streaming vs. in-memory packer.

Generates synthetic Greek corpora of about 10M and 100M tokens from the bundled text (every
sentence made unique by a number, so deduplication keeps it), then, each step in a fresh child
process:

* ``prepare``: ``prepare-data`` (jsonl source, el as the new language, no UDHR) with 1 and with
  ``--num-proc`` processes;
* ``pack``: ``neuronmoe.training.data.build_packed`` (streaming, ``datasets`` map) on the
  prepared ``train/el.jsonl``, cold cache, cutoff 1024, with the tokenising processes training
  uses (``default_num_proc``: one process with the tokenizer's threads below 4 cores);
* ``pack_workers``: the same with ``--num-proc`` worker processes, at the ``--one-proc-sizes``
  (the side-by-side behind that default);
* ``legacy``: the in-memory packer that ``build_packed`` replaced (read every document into a
  list, shuffle, tokenize all, pack with int64), on the same file, only for ``--legacy-sizes``
  (it needs ~180 bytes per token: 18 GB at 100M tokens would exhaust this machine).

Memory: ``rss_growth`` = the child's kernel peak RSS (VmHWM) minus its RSS after imports and
tokenizer loading (the issue's measure; mapped files count while their pages are cached);
``tree_anon_growth`` / ``tree_pss_growth`` = the peak, polled every 0.1 s, of the summed
``Pss_Anon`` / ``Pss`` (smaps_rollup) of the child and all its worker processes, minus the child's
own value at the baseline: the whole build's private memory, shared pages counted once.
``workers_rss`` = the largest kernel peak RSS of a worker process (forked: includes the pages it
shares with the child).

``--long-doc-mb N`` adds a corpus that is the first size's plus one single-line document of N MB (issue 24:
a 50 MB line took prepare-data to 7.7 GB) and prints its peak RSS over the plain corpus's, for ``prepare``
(the corpus through prepare-data) and ``pack`` (the corpus file itself packed, the long document included).

    python benchmarks/bench_data.py --sizes 10M,100M --num-proc 2 --out /tmp/bench_data.json
    python benchmarks/bench_data.py --sizes 100K --long-doc-mb 100 --steps prepare,pack --num-proc 1 \
        --legacy-sizes "" --one-proc-sizes ""
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMBG" else s) * mult)


# ----------------------------------------------------------------------------- corpus
def base_sentences(lang: str = "el") -> list[str]:
    from neuronmoe.data.sources import make_source
    from neuronmoe.data.text import split_sentences
    from neuronmoe.languages import get_language

    script = get_language(lang).script
    out = []
    for doc in make_source("bundled").documents(lang):
        for par in doc:
            out.extend(s for s in split_sentences(par, script, lang) if len(s) > 20 and s[-1] in ".;!")
    return out


def add_long_document(src: Path, dst: Path, mb: float, seed: int = 1) -> dict:
    """``dst`` = ``src`` with one more document first: ``mb`` MB of unique sentences on one line."""
    base = base_sentences(dst.stem)
    rng = random.Random(seed)
    parts, size, i = [], 0, 0
    while size < mb * 1e6:
        s = rng.choice(base)
        i += 1
        parts.append(f"{s[:-1]} L{i}{s[-1]}")
        size += len(parts[-1].encode("utf-8")) + 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": " ".join(parts)}, ensure_ascii=False) + "\n")
        fh.write(src.read_text(encoding="utf-8"))
    (dst.parent / "en.jsonl").write_text((src.parent / "en.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    return {"long_document_bytes": size, "bytes": dst.stat().st_size}


def make_corpus(path: Path, tokens: int, lang: str = "el", seed: int = 0) -> dict:
    """Write ``path`` (jsonl) with about ``tokens`` tokens of unique sentences; returns its stats."""
    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(None)
    base = base_sentences(lang)
    rng = random.Random(seed)
    counter = 0

    def doc() -> str:
        nonlocal counter
        pars = []
        for _ in range(rng.randint(1, 3)):
            sents = []
            for _ in range(rng.randint(2, 5)):
                s = rng.choice(base)
                counter += 1
                sents.append(f"{s[:-1]} {counter}{s[-1]}")  # unique: dedup keeps every sentence
            pars.append(" ".join(sents))
        return "\n".join(pars)

    sample = [doc() for _ in range(200)]
    per_char = sum(len(x) for x in tok(sample, add_special_tokens=False)["input_ids"]) / sum(map(len, sample))
    target_chars = tokens / per_char
    path.parent.mkdir(parents=True, exist_ok=True)
    n_docs = chars = 0
    with open(path, "w", encoding="utf-8") as fh:
        for d in sample:
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            chars += len(d)
            n_docs += 1
        while chars < target_chars:
            d = doc()
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            chars += len(d)
            n_docs += 1
    # the old language (replay): the bundled English text as it is (~0.2M tokens)
    from neuronmoe.data.sources import make_source

    with open(path.with_name("en.jsonl"), "w", encoding="utf-8") as fh:
        for d in make_source("bundled").documents("en"):
            fh.write(json.dumps({"text": "\n".join(d)}, ensure_ascii=False) + "\n")
    return {"documents": n_docs, "sentences": counter, "chars": chars, "bytes": path.stat().st_size,
            "est_tokens": int(chars * per_char), "tokens_per_char": round(per_char, 4)}


# ----------------------------------------------------------------------------- child steps
def _status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS/VmHWM (status) and Pss/Pss_Anon (smaps_rollup) of a process, in bytes."""
    out = {}
    for name, keys in (("status", ("VmRSS", "VmHWM", "RssAnon", "RssFile")), ("smaps_rollup", ("Pss", "Pss_Anon"))):
        with open(f"/proc/{pid}/{name}") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0]) * 1024
    return out


def _cpu(children: bool = True) -> float:
    """User + system CPU seconds of this process (and of its finished children)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    if not children:
        return a.ru_utime + a.ru_stime
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class RssParts:
    """Peak ``RssAnon`` (private memory) and ``RssFile`` (pages of mapped files) of this process, polled every
    0.1 s, with the largest file mappings at the peak of ``RssFile`` (read from ``/proc/self/smaps``)."""

    def __init__(self) -> None:
        self.base = _status()
        self.peak = {"RssAnon": self.base["RssAnon"], "RssFile": self.base["RssFile"]}
        self.maps: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def file_maps(min_mb: float = 4.0) -> list[tuple[float, str]]:
        out: dict[str, float] = {}
        cur = None
        with open("/proc/self/smaps") as fh:
            for line in fh:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                    cur = head[5] if len(head) > 5 and head[5].startswith("/") else None
                elif cur and line.startswith("Rss:"):
                    out[cur] = out.get(cur, 0.0) + int(head[1]) / 1024
        return sorted(((round(v, 1), k) for k, v in out.items() if v >= min_mb), reverse=True)[:6]

    def _run(self) -> None:
        last_maps = self.base["RssFile"]
        while not self._stop.wait(0.1):
            self.sample()
            if self.peak["RssFile"] > last_maps + (16 << 20):  # a new file-page peak: where is it?
                last_maps = self.peak["RssFile"]
                self.maps = self.file_maps()

    def sample(self) -> None:
        st = _status()
        for k in self.peak:
            self.peak[k] = max(self.peak[k], st[k])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._t.join()
        self.sample()
        return {"rss_anon_growth_mb": round((self.peak["RssAnon"] - self.base["RssAnon"]) / 2**20, 1),
                "rss_file_growth_mb": round((self.peak["RssFile"] - self.base["RssFile"]) / 2**20, 1),
                "file_maps_at_peak": [[mb, p.replace(str(Path.home()), "~")] for mb, p in self.maps]}


def legacy_build(sources, tok, cutoff: int, seed: int):
    """The packer before streaming: every document, every id as a Python int, then int64 arrays."""
    from neuronmoe.training.data import pack, read_documents

    docs = [(t, s.flag) for s in sources for t in read_documents(s)]
    random.Random(seed).shuffle(docs)
    enc = tok([d[0] for d in docs], add_special_tokens=False)["input_ids"]
    ids, flags = pack(enc, [d[1] for d in docs], cutoff, tok.eos_token_id)
    return ids, flags, sum(len(e) + 1 for e in enc)


def child(step: str, spec: dict) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import gc

    import datasets  # noqa: F401 - imported before the baseline, as in training
    import numpy as np

    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(None)
    tok(["warm up the tokenizer"], add_special_tokens=False)
    if step in ("pack", "legacy"):
        from neuronmoe.training.data import NEW, Source, build_packed  # noqa: F401
    else:
        from neuronmoe.data.prepare import DataSettings, prepare_data  # noqa: F401
    gc.collect()
    base = _status()
    parts = RssParts()
    cpu0, cpu0_self = _cpu(), _cpu(children=False)
    Path(spec["baseline_file"]).write_text(json.dumps(base))
    t0 = time.perf_counter()
    if step == "prepare":
        cfg = DataSettings.resolve(environ={}, new_langs=["el"], old_langs=["en"], neg_langs=[],
                                   source=f"jsonl:{spec['corpus']}", udhr=False, num_proc=spec["num_proc"], num_samples=500,
                                   output_dir=str(spec["out"]), progress=False, force=True)
        m = prepare_data(cfg, tokenizer=tok)
        wall, cpu, end, split = time.perf_counter() - t0, _cpu() - cpu0, _status(), parts.stop()
        c, e = m["counts"]["el"], m["counts"]["en"]
        tokens = c["train_tokens"] + c["heldout_tokens"] + e["replay_tokens"] + e["heldout_tokens"]
        extra = {"train_docs": c["train_docs"], "train_tokens": c["train_tokens"], "heldout_tokens": c["heldout_tokens"],
                 "en_tokens": e["replay_tokens"] + e["heldout_tokens"], "sentences": c["sentences"],
                 "duplicates_dropped": c["duplicates_dropped"]}
    elif step == "pack":
        d = build_packed([Source(spec["train"], "el", NEW)], tok, spec["cutoff"], 42, cache_dir=spec["cache"],
                         num_proc=spec["num_proc"], progress=False)
        wall, cpu, end, split = time.perf_counter() - t0, _cpu() - cpu0, _status(), parts.stop()  # before the checks
        tokens = d.meta["counts"]["tokens"]
        # checks read the file (a read through the memory map would add its pages to the RSS)
        dt, t = np.dtype(d.meta["storage_dtype"]), spec["cutoff"]
        rows = [np.fromfile(d.folder / "input_ids.bin", dtype=dt, count=t, offset=i * t * dt.itemsize).astype(np.int64)
                for i in range(0, len(d), max(1, len(d) // 1000))]
        extra = {"blocks": len(d), "storage_dtype": dt.name, "sample_sum": int(sum(r.sum() for r in rows)),
                 "first_block_sha": __import__("hashlib").sha256(rows[0].tobytes()).hexdigest()[:16]}
    elif step == "legacy":
        ids, flags, tokens = legacy_build([Source(spec["train"], "el", NEW)], tok, spec["cutoff"], 42)
        wall, cpu, end, split = time.perf_counter() - t0, _cpu() - cpu0, _status(), parts.stop()
        extra = {"blocks": int(ids.shape[0]), "sample_sum": int(ids[:: max(1, len(ids) // 1000)].sum()),
                 "first_block_sha": __import__("hashlib").sha256(ids[0].astype(np.int64).tobytes()).hexdigest()[:16]}
    else:
        raise SystemExit(f"unknown step {step}")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"step": step, "wall_s": round(wall, 2), "tokens": int(tokens), "tokens_per_s": round(tokens / wall),
            "cpu_s": round(cpu, 2), "tokens_per_cpu_s": round(tokens / cpu), "main_cpu_s": round(_cpu(children=False) - cpu0_self, 2),
            "rss_growth_mb": round((end["VmHWM"] - base["VmRSS"]) / 2**20, 1),
            "baseline_rss_mb": round(base["VmRSS"] / 2**20, 1), **split,
            "workers_rss_mb": round(kids / 2**20, 1), **extra}


def _tree_pss(pid: int) -> tuple[int, int]:
    """Sum of (Pss, Pss_Anon) over a process and its descendants (shared pages counted once in total)."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0, 0
    pss = anon = 0
    for p in procs:
        try:
            s = _status(p.pid)
        except OSError:
            continue
        pss += s.get("Pss", 0)
        anon += s.get("Pss_Anon", 0)
    return pss, anon


def run_child(step: str, spec: dict) -> dict:
    spec = dict(spec, baseline_file=str(Path(spec["work"]) / f".baseline-{step}.json"))
    Path(spec["baseline_file"]).unlink(missing_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
    p = subprocess.Popen([sys.executable, str(HERE), "--child", step, "--spec", json.dumps(spec)],
                         stdout=subprocess.PIPE, text=True, env=env)
    peak = {"pss": 0, "anon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pss, anon = _tree_pss(p.pid)
            peak["pss"], peak["anon"] = max(peak["pss"], pss), max(peak["anon"], anon)
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    load0 = os.getloadavg()
    out, _ = p.communicate()
    stop.set()
    th.join()
    if p.returncode != 0:
        raise SystemExit(f"child {step} failed ({p.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    base = json.loads(Path(spec["baseline_file"]).read_text())
    res["load"] = [round(x, 2) for x in load0]
    res["load_end"] = [round(x, 2) for x in os.getloadavg()]
    res["tree_anon_growth_mb"] = round((peak["anon"] - base["Pss_Anon"]) / 2**20, 1)
    res["tree_pss_growth_mb"] = round((peak["pss"] - base["Pss"]) / 2**20, 1)
    return res


# ----------------------------------------------------------------------------- driver
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "load_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10M,100M", help="corpus sizes in tokens (comma separated)")
    ap.add_argument("--legacy-sizes", default="10M", help="sizes at which the in-memory packer also runs")
    ap.add_argument("--one-proc-sizes", default="10M",
                    help="sizes at which prepare-data also runs in one process and packing with worker processes")
    ap.add_argument("--num-proc", type=int, default=2,
                    help="processes for prepare-data, and for tokenizing in the pack_workers step")
    ap.add_argument("--cutoff", type=int, default=1024, help="block length")
    ap.add_argument("--work", default="/tmp/neuronmoe-bench-data", help="folder for corpora and outputs")
    ap.add_argument("--steps", default="prepare1,prepare,pack,pack_workers,legacy", help="which steps to run")
    ap.add_argument("--long-doc-mb", type=float, default=0,
                    help="also run prepare/pack on the first size's corpus plus one single-line document of this many MB")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.spec))))
        return 0
    work = Path(args.work)
    steps = set(args.steps.split(","))
    legacy = {parse_size(s) for s in args.legacy_sizes.split(",") if s}
    one_proc = {parse_size(s) for s in args.one_proc_sizes.split(",") if s}
    results = {"machine": machine(), "num_proc": args.num_proc, "cutoff": args.cutoff, "runs": []}
    import shutil

    for size_s in args.sizes.split(","):
        size = parse_size(size_s)
        d = work / size_s
        corpus = d / "corpus" / "el.jsonl"
        if not corpus.exists():
            info = make_corpus(corpus, size)
            (d / "corpus.json").write_text(json.dumps(info))
        info = json.loads((d / "corpus.json").read_text())
        print(f"[{size_s}] corpus {info}", flush=True)
        spec = {"work": str(d), "corpus": str(d / "corpus" / "{lang}.jsonl"), "cutoff": args.cutoff}
        run = {"size": size_s, "corpus": info, "load": os.getloadavg()}
        if "prepare1" in steps and size in one_proc:
            run["prepare_1proc"] = run_child("prepare", {**spec, "out": str(d / "prep1"), "num_proc": 1})
            print(f"[{size_s}] prepare 1 proc {run['prepare_1proc']}", flush=True)
        if "prepare" in steps or not (d / "prep" / "data" / "train" / "el.jsonl").exists():
            run["prepare"] = run_child("prepare", {**spec, "out": str(d / "prep"), "num_proc": args.num_proc})
            print(f"[{size_s}] prepare {args.num_proc} procs {run['prepare']}", flush=True)
        train = str(d / "prep" / "data" / "train" / "el.jsonl")
        if "pack" in steps:
            shutil.rmtree(d / "cache", ignore_errors=True)
            run["pack"] = run_child("pack", {**spec, "train": train, "cache": str(d / "cache"), "num_proc": None})
            print(f"[{size_s}] pack {run['pack']}", flush=True)
        if "pack_workers" in steps and size in one_proc:
            shutil.rmtree(d / "cache", ignore_errors=True)
            run["pack_workers"] = run_child("pack", {**spec, "train": train, "cache": str(d / "cache"),
                                                      "num_proc": args.num_proc})
            print(f"[{size_s}] pack with {args.num_proc} worker processes {run['pack_workers']}", flush=True)
        if "legacy" in steps and size in legacy:
            run["legacy"] = run_child("legacy", {**spec, "train": train})
            print(f"[{size_s}] legacy {run['legacy']}", flush=True)
            if "pack" in run:
                run["same_blocks"] = all(run["pack"][k] == run["legacy"][k] for k in ("blocks", "sample_sum", "first_block_sha"))
        run["load_end"] = os.getloadavg()
        results["runs"].append(run)
    if args.long_doc_mb:
        results["long_document"] = long_document_runs(work, args, steps)
    summarize(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


def long_document_runs(work: Path, args: argparse.Namespace, steps: set[str]) -> dict:
    """prepare and pack on the first size's corpus with and without one long single-line document; the ratio
    of their peak RSS growth (issue 24: within 1.2x)."""
    import shutil

    size_s = args.sizes.split(",")[0]
    d, ld = work / size_s, work / f"{size_s}-long{args.long_doc_mb:g}MB"
    info = add_long_document(d / "corpus" / "el.jsonl", ld / "corpus" / "el.jsonl", args.long_doc_mb)
    out: dict[str, Any] = {"corpus": info}
    for name, folder in (("plain", d), ("long", ld)):
        spec = {"work": str(folder), "corpus": str(folder / "corpus" / "{lang}.jsonl"), "cutoff": args.cutoff}
        if "prepare" in steps:
            out[f"{name}_prepare"] = run_child("prepare", {**spec, "out": str(folder / "prep-ld"), "num_proc": args.num_proc})
        if "pack" in steps:
            shutil.rmtree(folder / "cache-ld", ignore_errors=True)
            train = folder / "corpus" / "el.jsonl"  # the corpus itself: prepare-data may hold the long one out
            out[f"{name}_pack"] = run_child("pack", {**spec, "train": str(train), "cache": str(folder / "cache-ld"),
                                                     "num_proc": None})
    for k in ("prepare", "pack"):
        if f"long_{k}" in out:
            a, b = out[f"plain_{k}"], out[f"long_{k}"]
            out[f"{k}_ratio"] = round((b["baseline_rss_mb"] + b["rss_growth_mb"]) / (a["baseline_rss_mb"] + a["rss_growth_mb"]), 3)
            print(f"long document ({args.long_doc_mb:g} MB) {k}: peak RSS {b['baseline_rss_mb'] + b['rss_growth_mb']:.0f} MB "
                  f"vs {a['baseline_rss_mb'] + a['rss_growth_mb']:.0f} MB without it = {out[f'{k}_ratio']}x "
                  f"(growth {b['rss_growth_mb']} vs {a['rss_growth_mb']} MB; wall {b['wall_s']} vs {a['wall_s']} s)", flush=True)
    return out


STEPS = ("prepare_1proc", "prepare", "pack", "pack_workers", "legacy")


def summarize(results: dict) -> None:
    runs = results["runs"]
    _print_table(runs)
    _print_growth(runs)
    for r in runs:
        _print_ratios(r, results["num_proc"])
        _print_extrapolation(r, results["machine"]["cores"])


def _print_table(runs: list) -> None:
    print("\nsize | step | tokens | wall s | tokens/s | CPU s | tokens/CPU-s | RSS growth MB | anon / file MB | "
          "tree anon growth MB | tree PSS growth MB | workers RSS MB | load")
    for r in runs:
        for k in STEPS:
            if k in r:
                x = r[k]
                print(f"{r['size']} | {k} | {x['tokens']:,} | {x['wall_s']} | {x['tokens_per_s']:,} | {x['cpu_s']} | "
                      f"{x['tokens_per_cpu_s']:,} | {x['rss_growth_mb']} | {x['rss_anon_growth_mb']} / {x['rss_file_growth_mb']} | "
                      f"{x['tree_anon_growth_mb']} | {x['tree_pss_growth_mb']} | {x['workers_rss_mb']} | "
                      f"{x.get('load', ['?'])[0]}")


def _print_growth(runs: list) -> None:
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        for k in ("pack", "prepare"):
            if k in a and k in b:
                for m in ("rss_growth_mb", "rss_anon_growth_mb", "rss_file_growth_mb", "tree_anon_growth_mb",
                          "tree_pss_growth_mb"):
                    print(f"{k} {m}: {b['size']} / {a['size']} = {b[k][m] / max(a[k][m], 1e-9):.2f}x")


def _print_ratios(r: dict, num_proc: int) -> None:
    if "pack" in r and "legacy" in r:
        p, q = r["pack"], r["legacy"]
        print(f"{r['size']}: streaming / in-memory packer: time {p['wall_s'] / q['wall_s']:.2f}x, "
              f"RSS growth {p['rss_growth_mb'] / q['rss_growth_mb']:.3f}x, same blocks: {r.get('same_blocks')}")
    for new, base, what in (("pack", "pack_workers", "packing, default / worker processes"),
                            ("prepare", "prepare_1proc", f"prepare-data, {num_proc} processes / 1")):
        if new in r and base in r:
            same = "" if new != "pack" else ", same blocks: " + str(all(
                r[new][k] == r[base][k] for k in ("blocks", "sample_sum", "first_block_sha")))
            print(f"{r['size']}: {what}: tokens/s {r[new]['tokens_per_s'] / r[base]['tokens_per_s']:.2f}x{same}")


def _print_extrapolation(r: dict, cores: int) -> None:
    for k in STEPS:
        if k in r:
            x = r[k]
            print(f"{r['size']} {k}: 2B tokens would take {2e9 / x['tokens_per_s'] / 3600:.2f} h at {x['tokens_per_s']:,} tokens/s "
                  f"(this load), {2e9 / x['tokens_per_cpu_s'] / cores / 3600:.2f} h on {cores} idle cores and "
                  f"{2e9 / x['tokens_per_cpu_s'] / 16 / 3600:.2f} h on 16 at {x['tokens_per_cpu_s']:,} tokens per CPU-second"
                  + (f"; memory {x['rss_growth_mb'] / x['tokens'] * 2e9 / 1024:.0f} GB (linear)" if k == "legacy" else ""))


if __name__ == "__main__":
    sys.exit(main())
