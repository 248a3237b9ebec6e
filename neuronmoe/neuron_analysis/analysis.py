"""The whole stage: samples -> pooled activations -> AP (or LAPE) -> top-K units -> counts."""
from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronmoe.errors import InputError
from neuronmoe.neuron_analysis.units import UnitLayout

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from neuronmoe.neuron_analysis.settings import NeuronSettings


def load_samples(data_dir: str | Path, languages: list[str], tokenizer: Any) -> tuple[list[str], list[int], dict[str, Any]]:
    """Texts and language ids of ``data_dir/samples/<lang>.jsonl``; checks the tokenizer fingerprint."""
    from neuronmoe.layout import Layout
    from neuronmoe.utils.checks import check_data_tokenizer, check_input_files
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.io import read_texts

    data_dir = Path(data_dir).resolve()  # one fingerprint however the folder is spelled
    have = tokenizer_fingerprint(tokenizer)
    man = check_data_tokenizer(data_dir, have)
    texts: list[str] = []
    lang_ids: list[int] = []
    layout = Layout(data_dir.parent)
    paths = [layout.data_file("samples", lang, data_dir) for lang in languages]
    files = check_input_files(data_dir, man, paths)  # sha256 of each, equal to the data manifest's
    for li, (lang, path) in enumerate(zip(languages, paths)):
        got = read_texts(path, lang=lang)
        texts += got
        lang_ids += [li] * len(got)
    inputs = {"data_manifest": str(data_dir / "manifest.json") if man is not None else None,
              "tokenizer_fingerprint": have, "samples_sha256": files}
    return texts, lang_ids, inputs


def tokenize(texts: list[str], lang_ids: list[int], languages: list[str], tokenizer: Any,
             max_length: int) -> tuple[list[list[int]], np.ndarray, np.ndarray, dict[str, int]]:
    """Token ids (the tokenizer's own special tokens, e.g. BOS); drops samples over ``max_length``."""
    enc = tokenizer(texts, add_special_tokens=True)["input_ids"]
    keep = [i for i, ids in enumerate(enc) if 0 < len(ids) <= max_length]
    dropped = {lang: 0 for lang in languages}
    for i in set(range(len(texts))) - set(keep):
        dropped[languages[lang_ids[i]]] += 1
    ids = [enc[i] for i in keep]
    lab = np.asarray([lang_ids[i] for i in keep], dtype=np.int64)
    for li, lang in enumerate(languages):
        if not (lab == li).any():
            raise InputError(f"language {lang!r}: all {dropped[lang]} samples are longer than --max-length {max_length} tokens")
    if any(dropped.values()):
        log.warning("dropped samples longer than %d tokens: %s", max_length, {k: v for k, v in dropped.items() if v})
    return ids, lab, np.asarray(keep, dtype=np.int64), dropped


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    from neuronmoe.utils.io import atomic_write_text

    lines = [",".join(header)] + [",".join(str(x) for x in r) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def reproducibility_facts(device: Any) -> dict[str, Any]:
    """What bitwise-equal activations depend on besides the inputs (docs/reliability.md): the kernels torch
    dispatches to (CPU capability or GPU model), its intra-op threads, and the torch version (in ``versions``)."""
    import torch

    facts: dict[str, Any] = {"torch_threads": torch.get_num_threads(),
                             "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if getattr(device, "type", None) == "cuda":
        facts["cuda_device"] = torch.cuda.get_device_name(device)
        facts["cuda_version"] = torch.version.cuda
    return facts


def plot_counts(per_layer: np.ndarray, languages: list[str], stem: Path, title: str) -> list[Path]:
    from neuronmoe.plotting import lang_color, new_figure, save_figure

    fig, ax = new_figure(7.0, 3.2)
    x = np.arange(per_layer.shape[0])
    for i, lang in enumerate(languages):
        ax.plot(x, per_layer[:, i], marker="o", ms=2.5, lw=1.2, label=lang, color=lang_color(lang, i))
    ax.set_xlabel("layer")
    ax.set_ylabel("selected units")
    ax.set_title(title)
    ax.legend(ncol=min(len(languages), 5))
    return save_figure(fig, stem)


def stage_config(s: NeuronSettings, model_info: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the outputs (a rerun with the same ones and the same inputs is skipped)."""
    return {
        "model": model_info.get("model"), "languages": list(s.languages), "metric": s.metric,
        "top_k": int(s.top_k), "ap_threshold": float(s.ap_threshold), "pool": s.pool,
        "include_bos": bool(s.include_bos), "modules": list(s.modules) if s.modules else None,
        "batch_size": int(s.batch_size), "max_length": int(s.max_length), "dtype": str(s.dtype),
        "lape_quantile": float(s.lape_quantile),
    }


def is_complete(out_dir: Path, config: dict[str, Any], inputs: dict[str, Any]) -> bool:
    man = out_dir / "manifest.json"
    if not man.exists():
        return False
    try:
        d = json.loads(man.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return d.get("config") == json.loads(json.dumps(config)) and d.get("inputs") == json.loads(json.dumps(inputs))


@dataclass
class NeuronRun:
    """What :func:`prepare_run` resolved and checked for one run of the stage."""

    cfg: NeuronSettings
    languages: list[str]
    out_root: Path
    out_dir: Path
    device: Any
    dtype: Any
    layout: UnitLayout
    tokenizer: Any
    texts: list[str]
    lang_ids: list[int]
    inputs: dict[str, Any]
    info: dict[str, Any]
    config: dict[str, Any]
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)


def main(settings: NeuronSettings) -> int:
    """``neuronmoe neurons``: run the stage, print where the outputs are."""
    res = run_neuron_analysis(settings)
    if res.get("skipped"):
        print(f"{res['out_dir']}: up to date (use --force to recompute)")
    elif res.get("complete"):
        print(f"wrote {res['out_dir']} ({res['timings']['total_s']:.1f}s)")
    return 0


def run_neuron_analysis(cfg: NeuronSettings, *, stop_after: int | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the stage with resolved settings (:class:`~neuronmoe.neuron_analysis.settings.NeuronSettings`).

    Steps: :func:`prepare_run` (config, samples, tokenizer check), :func:`tokenize`, :func:`collect` (one
    batched pass, all ranks), :func:`score` (AP or LAPE per unit and language), :func:`write_outputs`
    (top-K, counts, figure, manifest last). Returns a summary dict (on rank 0; other ranks return
    ``{"rank": r}`` after collection).
    """
    import torch

    from neuronmoe.utils.lock import output_lock

    progress = cfg.progress if progress is None else progress
    run = prepare_run(cfg)
    with output_lock(run.out_dir, f"neurons output folder {run.out_dir}"):  # a second run into it stops here
        if not cfg.force and is_complete(run.out_dir, run.config, run.inputs):
            log.info("%s is complete for this config and these inputs; nothing to do (use --force to redo)", run.out_dir)
            return {"skipped": True, "out_dir": str(run.out_dir)}
        ids, lab, _kept, dropped = tokenize(run.texts, run.lang_ids, run.languages, run.tokenizer, cfg.max_length)
        res, dist = collect(run, ids, lab, stop_after, progress)
        if dist.rank != 0:
            return {"rank": dist.rank}
        if not res["complete"]:
            return {"complete": False, "out_dir": str(run.out_dir)}
        scores, extra_files, lape_extra = score(run, lab, res["n_tokens"], progress)
        per_layer, selected = write_outputs(run, Scored(scores=scores, labels=lab, ids=ids, dropped=dropped,
                                                        n_tokens=res["n_tokens"], extra_files=extra_files,
                                                        lape_extra=lape_extra, world=dist.world))
    return {"complete": True, "out_dir": str(run.out_dir), "per_layer": per_layer, "selected": selected,
            "timings": run.timings, "config": run.config, "layout": run.layout, "torch_threads": torch.get_num_threads()}


def prepare_run(cfg: NeuronSettings) -> NeuronRun:
    """Resolve device, dtype, the unit layout, the tokenizer; fingerprint the inputs (settings are checked)."""
    from neuronmoe.layout import Layout
    from neuronmoe.models import describe, load_config, load_tokenizer
    from neuronmoe.utils.device import resolve_device, resolve_dtype

    t0 = time.perf_counter()
    languages = list(cfg.languages)
    paths = Layout(cfg.output_dir)
    device = resolve_device(cfg.device)
    tok = load_tokenizer(cfg.model)
    texts, lang_ids, inputs = load_samples(Path(cfg.data_dir or paths.data), languages, tok)
    info = describe(cfg.model)
    return NeuronRun(cfg=cfg, languages=languages, out_root=paths.root, out_dir=paths.neurons, device=device,
                     dtype=resolve_dtype(cfg.dtype, device),
                     layout=UnitLayout.for_model(load_config(cfg.model), cfg.modules, cfg.metric),
                     tokenizer=tok, texts=texts, lang_ids=lang_ids, inputs=inputs, info=info,
                     config=stage_config(cfg, info), t0=t0)


def collect(run: NeuronRun, ids: list[list[int]], lab: np.ndarray, stop_after: int | None,
            progress: bool) -> tuple[dict[str, Any], Any]:
    """Pooled activations of every unit for every sample (resumable memmaps; sharded over ranks)."""
    from neuronmoe.models import load_model
    from neuronmoe.neuron_analysis.collect import collect_activations, init_distributed

    cfg, tok = run.cfg, run.tokenizer
    bos = tok.bos_token_id
    skip = [bool(not cfg.include_bos and x[0] == bos) for x in ids] if bos is not None else [False] * len(ids)
    dist = init_distributed(run.device)
    model = load_model(cfg.model, dtype=run.dtype, device=run.device)
    t_load = time.perf_counter()
    if dist.rank == 0 and (run.out_dir / "manifest.json").exists():
        (run.out_dir / "manifest.json").unlink()  # the old outputs are about to be replaced: not complete any more
    pool = "pos_frac" if cfg.metric == "lape" else cfg.pool
    key_parts = {"model": run.info.get("path"), "dtype": str(run.dtype), "device_type": run.device.type}
    res = collect_activations(
        model, ids, run.out_dir / "activations", run.layout, pool=pool, pad_id=int(tok.pad_token_id or 0),
        skip_first=skip, batch_size=cfg.batch_size, key_parts=key_parts,
        labels=[run.languages[i] for i in lab], progress=progress, stop_after=stop_after,
    )
    del model
    run.timings.update(load_s=round(t_load - run.t0, 2), collect_s=round(time.perf_counter() - t_load, 2))
    return res, dist


def score(run: NeuronRun, lab: np.ndarray, n_tok: np.ndarray, progress: bool
          ) -> tuple[np.ndarray, list[Path], dict[str, Any]]:
    """Scores [U, L]: AP per unit and language (chunked, on the GPU when there is one), or LAPE."""
    from neuronmoe.neuron_analysis.ap import average_precision
    from neuronmoe.neuron_analysis.collect import load_activations
    from neuronmoe.neuron_analysis.lape import activation_probability, lape_scores
    from neuronmoe.utils.io import atomic_write_bytes

    t0 = time.perf_counter()
    cfg, layout, L = run.cfg, run.layout, len(run.languages)
    layers = load_activations(run.out_dir / "activations", layout.num_layers)
    scores = np.empty((layout.total, L), dtype=np.float32)
    extra_files: list[Path] = []
    lape_extra: dict[str, Any] = {}
    if cfg.metric == "ap":
        chunk = cfg.ap_chunk_mb << 20
        ap_dev = run.device if run.device.type == "cuda" else None
        it = range(layout.num_layers)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="average precision", unit="layer")
        w = layout.layer_width
        for li in it:
            scores[li * w: (li + 1) * w] = average_precision(layers[li], lab, num_labels=L, device=ap_dev,
                                                             max_chunk_bytes=chunk)
    else:
        frac = np.concatenate([np.asarray(x) for x in layers], axis=1)
        p = activation_probability(frac, n_tok, lab, L)
        s, ent, bar = lape_scores(p, cfg.lape_quantile)
        scores[:] = s
        buf = io.BytesIO()
        np.savez(buf, prob=p.astype(np.float32), entropy=ent.astype(np.float32), bar=np.float64(bar))
        extra_files.append(atomic_write_bytes(run.out_dir / "lape.npz", buf.getvalue()))
        lape_extra = {"lape_activation_bar": bar}
    run.timings["score_s"] = round(time.perf_counter() - t0, 2)
    return scores, extra_files, lape_extra


@dataclass
class Scored:
    """What :func:`score` and the collection produced for :func:`write_outputs`."""

    scores: np.ndarray  #: [units, languages]
    labels: np.ndarray  #: language id of every kept sample
    ids: list[list[int]]  #: token ids of every kept sample
    dropped: dict[str, int]  #: samples over --max-length per language
    n_tokens: np.ndarray  #: pooled tokens per sample
    extra_files: list[Path] = field(default_factory=list)
    lape_extra: dict[str, Any] = field(default_factory=dict)
    world: int = 1


def write_outputs(run: NeuronRun, sc: Scored) -> tuple[np.ndarray, list[np.ndarray]]:
    """Top-K per language, ap.npy, units.npz, selected_<lang>.csv, counts, the figure; the manifest last."""
    from neuronmoe.layout import Layout
    from neuronmoe.neuron_analysis.select import count_per_layer, count_per_layer_module, select_top_k

    t0 = time.perf_counter()
    cfg, layout = run.cfg, run.layout
    units = layout.arrays()
    units["module_names"] = np.array(layout.modules)
    selected = select_top_k(sc.scores, cfg.top_k, cfg.ap_threshold)
    per_layer = count_per_layer(selected, units["layer"], layout.num_layers)
    per_mod = count_per_layer_module(selected, units, layout.num_layers)
    written = _write_unit_files(run, sc.scores, units, selected, per_layer, per_mod)
    figs = plot_counts(per_layer, run.languages, Layout(run.out_root).figures / "neurons_per_layer",
                       f"{cfg.metric.upper()} top-{cfg.top_k} units per layer ({Path(str(run.info.get('model'))).name})")
    t_end = time.perf_counter()
    run.timings.update(write_s=round(t_end - t0, 2), total_s=round(t_end - run.t0, 2))
    _write_neurons_manifest(run, sc, selected, written, figs)
    log.info("neuron analysis done in %.1fs: %s", t_end - run.t0, run.timings)
    return per_layer, selected


def _write_unit_files(run: NeuronRun, scores: np.ndarray, units: dict[str, np.ndarray], selected: list[np.ndarray],
                      per_layer: np.ndarray, per_mod: np.ndarray) -> list[Path]:
    """ap.npy, units.npz, selected_<lang>.csv and the count tables; the paths written."""
    from neuronmoe.neuron_analysis.select import counts_json
    from neuronmoe.utils.io import atomic_write_bytes, atomic_write_json

    cfg, layout, languages, out_dir = run.cfg, run.layout, run.languages, run.out_dir
    written = [atomic_write_bytes(out_dir / "ap.npy", _npy_bytes(scores)), layout.save(out_dir / "units.npz")]
    for li, lang in enumerate(languages):
        rows = [[int(units["layer"][u]), layout.modules[units["module_id"][u]], int(units["index"][u]), f"{scores[u, li]:.6f}"]
                for u in selected[li]]
        _write_csv(out_dir / f"selected_{lang}.csv", ["layer", "module", "index", "ap"], rows)
        written.append(out_dir / f"selected_{lang}.csv")
    _write_csv(out_dir / "counts_per_layer.csv", ["layer", *languages],
               [[layer, *per_layer[layer].tolist()] for layer in range(layout.num_layers)])
    _write_csv(out_dir / "counts_per_layer_module.csv", ["layer", "module", *languages],
               [[layer, m, *per_mod[layer, j].tolist()] for layer in range(layout.num_layers) for j, m in enumerate(layout.modules)])
    atomic_write_json(out_dir / "counts.json", counts_json(
        languages, per_layer, per_mod, list(layout.modules),
        {"metric": cfg.metric, "top_k": cfg.top_k, "ap_threshold": cfg.ap_threshold}))
    return written + [out_dir / "counts_per_layer.csv", out_dir / "counts_per_layer_module.csv", out_dir / "counts.json"]


def _write_neurons_manifest(run: NeuronRun, sc: Scored, selected: list[np.ndarray], written: list[Path],
                            figs: list[Path]) -> None:
    from neuronmoe.utils.manifest import Manifest, describe_files, write_manifest

    layout, languages, out_dir, lab = run.layout, run.languages, run.out_dir, sc.labels
    act_files = ([out_dir / "activations" / f"layer_{li:03d}.npy" for li in range(layout.num_layers)]
                 + [out_dir / "activations" / "progress.json"])
    bos = run.tokenizer.bos_token_id
    man = Manifest(
        stage="neurons", config=run.config, inputs=run.inputs, settings=run.cfg,
        counts={"samples": {lang: int((lab == i).sum()) for i, lang in enumerate(languages)},
                "dropped_over_max_length": sc.dropped, "tokens": int(sc.n_tokens.sum()), "units": layout.total,
                "num_layers": layout.num_layers, "selected": {k: int(len(s)) for k, s in zip(languages, selected)}},
        files=describe_files(out_dir, written + sc.extra_files + act_files),
        extra={"model_info": run.info, "unit_layout": {"modules": list(layout.modules), "sizes": list(layout.sizes)},
               "bos_added_by_tokenizer": bool(bos is not None and all(x and x[0] == bos for x in sc.ids)),
               "compute_dtype": str(run.dtype).replace("torch.", ""), "device": str(run.device), "world_size": sc.world,
               "reproducibility": reproducibility_facts(run.device),
               "figures": [str(f) for f in figs], "timings": run.timings, **sc.lape_extra},
    )
    write_manifest(out_dir, man)
