"""Each model-bound stage of the miniature pipeline side by side with a plain forward (forward + backward for
training) of the same model over the same tokens, in one process (docs/benchmarks.md records the results).

* ``eval-cloze``: the local suite's cloze requests scored by the evaluation's code (options on one pass of their
  shared context) and by lm-eval's own path (every option with its whole context), against a plain forward of
  the tokens the stage reads (each context once, each option once) packed into full ``[8, 128]`` batches;
* ``eval-heldout``: the held-out documents' rolling log-likelihood against a plain forward of their tokens;
* ``analysis``: the expert analysis (routing capture, pooling, memmaps; AP excluded) against a plain forward
  of the same sentences;
* ``train``: a plain forward + backward + AdamW step of the adapted model on ``[4, 128]`` tokens (the CPU
  profile's step), the floor a training stage's per-step time is compared with.

With ``--pipeline-output DIR`` it also reads that run's ``pipeline/timings.json`` and prints every stage's time
over the plain-forward time of the tokens it counted (forward, and backward for training), using the rates
measured here in the dtype the stage recorded (fp32, or bf16 where native) and scaled by the linear-layer work
the stage counted against the dense model's (experts included). Every run prints one JSON object (and writes it
to ``--out``). Keep the sizes small on a shared machine: the defaults take about 1-2 minutes on 2 cores.

    python benchmarks/bench_stages.py --data outputs/data --cloze-items 20 --heldout-docs 8 --sentences 16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

import neuronmoe  # noqa: E402,F401  (registers the PEFT method)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def plain_forward(model: Any, n_tokens: int, seq: int = 128, batch: int = 8, vocab: int = 1000) -> float:
    """Seconds of a plain no-grad forward over ``n_tokens`` tokens in full ``[batch, seq]`` blocks (the last one
    shorter), logits for every position: the floor a stage reading that many tokens is measured against."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (max(1, n_tokens),), generator=g)
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, ids.numel(), seq * batch):
            chunk = ids[start: start + seq * batch]
            rows = max(1, chunk.numel() // seq)
            model(input_ids=chunk[: rows * seq].view(rows, -1) if chunk.numel() >= seq else chunk.view(1, -1))
    return time.perf_counter() - t0


def cloze_requests(data: Path, lang: str, n_items: int) -> list[Any]:
    """lm-eval's requests for ``n_items`` local-suite cloze items: (query, " " + option) per option."""
    from lm_eval.api.instance import Instance

    from neuronmoe.evaluation.cloze import build_cloze_items
    from neuronmoe.utils.io import iter_jsonl

    paras = [row for _, row in iter_jsonl(data / "udhr" / f"{lang}.jsonl")]
    items = build_cloze_items(paras, n_items=n_items)
    return [Instance(request_type="loglikelihood", doc=it, arguments=(it["query"], " " + c), idx=j)
            for it in items for j, c in enumerate(it["choices"])]


def stage_tokens_cloze(lm: Any, reqs: list[Any]) -> int:
    """Tokens the shared-context path reads: each distinct context once (minus its last token), each option with it."""
    ctxs: dict[str, int] = {}
    n = 0
    for r in reqs:
        ctx, cont = r.arguments
        c_enc, w_enc = lm.tok_encode(ctx), lm.tok_encode(ctx + cont)
        ctxs.setdefault(ctx, len(c_enc) - 1)
        n += len(w_enc) - len(c_enc)  # last context token + option minus its last token
    return n + sum(ctxs.values())


def bench_cloze(model: Any, tok: Any, data: Path, langs: list[str], n_items: int) -> dict[str, Any]:
    from neuronmoe.evaluation.runner import make_lm

    lm = make_lm(model, tok, batch_size=8)
    out: dict[str, Any] = {}
    for lang in langs:
        reqs = cloze_requests(data, lang, n_items)
        lm.share_context = False
        t_old, ref = timed(lambda: lm.loglikelihood(reqs, disable_tqdm=True))  # noqa: B023
        lm.share_context = True
        t_new, got = timed(lambda: lm.loglikelihood(reqs, disable_tqdm=True))  # noqa: B023
        n = stage_tokens_cloze(lm, reqs)
        t_plain = plain_forward(model, n)
        diff = max(abs(a[0] - b[0]) for a, b in zip(got, ref))
        out[lang] = {"items": n_items, "requests": len(reqs), "tokens_read": n, "stage_s": round(t_new, 3),
                     "lm_eval_path_s": round(t_old, 3), "plain_forward_s": round(t_plain, 3),
                     "stage_over_plain": round(t_new / t_plain, 2), "lm_eval_over_stage": round(t_old / t_new, 2),
                     "max_abs_loglik_diff": diff}
    return out


def bench_heldout(model: Any, tok: Any, data: Path, langs: list[str], n_docs: int) -> dict[str, Any]:
    from lm_eval.api.instance import Instance

    from neuronmoe.evaluation.local_tasks import select_heldout
    from neuronmoe.evaluation.runner import make_lm
    from neuronmoe.utils.io import iter_jsonl

    lm = make_lm(model, tok, batch_size=8)
    out: dict[str, Any] = {}
    for lang in langs:
        docs = select_heldout([row for _, row in iter_jsonl(data / "heldout" / f"{lang}.jsonl")], n_docs)
        reqs = [Instance(request_type="loglikelihood_rolling", doc=d, arguments=(d["text"],), idx=0) for d in docs]
        t_stage, _ = timed(lambda: lm.loglikelihood_rolling(reqs, disable_tqdm=True))  # noqa: B023
        n = sum(len(tok(d["text"], add_special_tokens=False)["input_ids"]) + 1 for d in docs)
        t_plain = plain_forward(model, n)
        out[lang] = {"docs": len(docs), "tokens": n, "stage_s": round(t_stage, 3), "plain_forward_s": round(t_plain, 3),
                     "stage_over_plain": round(t_stage / t_plain, 2)}
    return out


def moe_model(base: Any, experts_per_layer: list[int]) -> Any:
    from peft import get_peft_model

    from neuronmoe.moe import MoEConfig

    m = get_peft_model(base, MoEConfig(experts_per_layer=experts_per_layer, top_k=2))
    m.eval()
    return m


def bench_analysis(model: Any, tok: Any, data: Path, langs: list[str], n: int, epl: list[int]) -> dict[str, Any]:
    from neuronmoe.analysis.expert_ap import expert_units
    from neuronmoe.analysis.runner import PassOptions, Sample, _Collector, _open_arrays
    from neuronmoe.models import model_dims
    from neuronmoe.utils.io import read_texts

    samples = [Sample(t, lang) for lang in langs for t in read_texts(data / "samples" / f"{lang}.jsonl", lang, n)]
    texts = [s.text for s in sorted(samples, key=lambda s: len(s.text))]
    d = model_dims(model)
    layout = expert_units(d["intermediate_size"], d["hidden_size"])
    moe = [li for li, e in enumerate(epl) if e > 1]
    targets = sorted([(li, e) for li in moe for e in range(epl[li])] + [(li, 0) for li, e in enumerate(epl) if e <= 1])
    how = PassOptions()
    with tempfile.TemporaryDirectory() as work:
        key = {"key": "bench", "N": len(texts), "U": layout.total, "targets": [list(t) for t in targets],
               "batch_size": how.batch_size, "max_length": how.max_length}
        _, mm, cnt = _open_arrays(Path(work), key, targets)
        from neuronmoe.analysis.runner import _moe_capture

        col = _Collector(model=model, tokenizer=tok, texts=texts, targets=targets, moe_layers=set(moe),
                         dense=[li for li, e in enumerate(epl) if e <= 1], mm=mm, cnt=cnt,
                         progress_path=Path(work) / "progress.json", key=key, capture=_moe_capture,
                         device=next(model.parameters()).device)
        t_stage, _ = timed(lambda: col.run(0))
    n_tok = sum(len(tok(t)["input_ids"]) for t in texts)
    t_plain = plain_forward(model, n_tok)
    return {"sentences": len(texts), "tokens": n_tok, "targets": len(targets), "stage_s": round(t_stage, 3),
            "plain_forward_s": round(t_plain, 3), "stage_over_plain": round(t_stage / t_plain, 2)}


def bench_train_step(model: Any, steps: int = 3, batch: int = 4, seq: int = 128) -> dict[str, Any]:
    """Seconds per optimizer step of a plain forward + backward + AdamW on the trainable parameters."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(3, 1000, (batch, seq), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    model.eval()
    best = min(times[1:])
    return {"batch": batch, "seq": seq, "step_s": round(best, 3), "tokens_per_s": round(batch * seq / best, 1),
            "trainable_params": sum(p.numel() for p in params)}


def pipeline_ratios(path: Path, fwd_s: dict[str, float], train_s: dict[str, float], macs: int) -> dict[str, Any]:
    """Each stage of a pipeline run over the plain-forward(/backward) time of the tokens it counted, in the dtype it
    computed in (``fwd_s`` / ``train_s``: seconds per token by dtype), scaled by the work it counted against the dense
    model's (``macs``: the dense model's linear multiply-adds per token): a LayerMoE stage runs its experts too, and
    an evaluation that computes logits only where it scores does less than a plain forward."""
    timings = json.loads((path / "pipeline" / "timings.json").read_text())
    out = {}
    for name, v in timings.items():
        if name.startswith("_") or not isinstance(v, dict) or not v.get("tokens_forward"):
            continue
        bwd, dt = v.get("tokens_backward") or 0, v.get("dtype") or "float32"
        dense_flops = 2.0 * macs * (v["tokens_forward"] + 2 * bwd)
        scale = v["flops"] / dense_flops if v.get("flops") else 1.0
        f, t = fwd_s.get(dt, fwd_s["float32"]), train_s.get(dt, train_s["float32"])
        floor = scale * ((v["tokens_forward"] - bwd) * f + bwd * t)
        out[name] = {"seconds": v.get("seconds"), "dtype": dt, "tokens_forward": v["tokens_forward"], "tokens_backward": bwd,
                     "work_vs_dense": round(scale, 2), "plain_s": round(floor, 1),
                     "stage_over_plain": round(v["seconds"] / floor, 2) if floor else None}
    return out


def plain_rates(model: Any, mm: Any, fwd_fp32: float, step: dict[str, Any] | None) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per token of a plain forward (dense model) and of a plain training step (the MoE model), in fp32 (the
    forward's ``fwd_fp32`` and the train section's ``step`` when it ran, measured once) and, where this CPU computes it
    natively, bf16 (a bf16 copy for the forward, autocast for training, as the stages)."""
    from neuronmoe.utils.device import native_bf16

    fwd = {"float32": fwd_fp32}
    step = step or bench_train_step(mm)
    train = {"float32": step["step_s"] / (step["batch"] * step["seq"])}
    if native_bf16("cpu"):
        import copy

        fwd["bfloat16"] = plain_forward(copy.deepcopy(model).to(torch.bfloat16), 2048) / 2048
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step = bench_train_step(mm)
        train["bfloat16"] = step["step_s"] / (step["batch"] * step["seq"])
    return fwd, train


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from neuronmoe.models import load_model, load_tokenizer, model_dims

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model (default smollm2-135m)")
    ap.add_argument("--data", required=True, help="a prepare-data folder ($OUTPUT_DIR/data)")
    ap.add_argument("--languages", default="en,el", help="evaluation languages (default en,el)")
    ap.add_argument("--cloze-items", type=int, default=20, help="cloze items per language (default 20)")
    ap.add_argument("--heldout-docs", type=int, default=8, help="held-out documents per language (default 8)")
    ap.add_argument("--sentences", type=int, default=16, help="analysis sentences per language (default 16)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--only", default="cloze,heldout,analysis,train", help="sections to run (default all)")
    ap.add_argument("--pipeline-output", help="a pipeline run's $OUTPUT_DIR: compare its stage times with the floors")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data, langs, only = Path(a.data), a.languages.split(","), set(a.only.split(","))
    tok, model = load_tokenizer(a.model), load_model(a.model, dtype="auto", device="cpu")
    n_layers = model_dims(model)["num_layers"]
    epl = [3 if i % 3 == 0 else 1 for i in range(n_layers)]  # a NeuronMoE-like allocation: experts every third layer
    res: dict[str, Any] = {"model": a.model, "threads": torch.get_num_threads(), "dtype": str(next(model.parameters()).dtype)}
    def log(what: str) -> None:  # the section about to run, and what the last one gave (a killed run keeps it)
        done = [k for k in res if isinstance(res[k], dict)]
        last = json.dumps(res[done[-1]]) if done else ""
        print(f"[bench_stages] {what} ({time.strftime('%H:%M:%S')}) {last}", file=sys.stderr, flush=True)

    if "cloze" in only:
        log("eval-cloze")
        res["eval_cloze"] = bench_cloze(model, tok, data, langs, a.cloze_items)
    if "heldout" in only:
        log("eval-heldout")
        res["eval_heldout"] = bench_heldout(model, tok, data, langs, a.heldout_docs)
    fwd_per_token = plain_forward(model, 2048) / 2048
    mm = moe_model(model, epl)
    if "analysis" in only:
        log("analysis")
        ana_langs = sorted(p.stem for p in (data / "samples").glob("*.jsonl"))
        res["analysis"] = bench_analysis(mm, tok, data, ana_langs, a.sentences, epl)
    if "train" in only:
        log("train step")
        res["train_step"] = bench_train_step(mm)
    log("done")
    res["plain_forward_s_per_token"] = fwd_per_token
    if a.pipeline_output:
        fwd, train = plain_rates(model, mm, fwd_per_token, res.get("train_step"))
        res["plain_s_per_token"] = {"forward": fwd, "train_step": train}
        macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
        res["pipeline"] = pipeline_ratios(Path(a.pipeline_output), fwd, train, macs)
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
