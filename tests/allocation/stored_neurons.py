"""Neuron-stage outputs with stored activations, built from a given activation matrix (no model needed): what
`neuronmoe neurons` writes (manifest with sha256, activations/layer_XXX.npy, ap.npy, units.npz, selected_<lang>.csv,
counts.json), so that the stability analysis can be tested on planted signals and pure noise."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODULES = ("q_proj", "up_proj")


def planted(languages: list[str], per_lang: int, num_layers: int, width: int, signal: dict[str, dict[int, int]],
            strength: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activations [N, num_layers * width] (fp16): standard normal noise, plus ``strength`` on the rows of a language
    for ``signal[lang][layer]`` units of that layer (the first units of the layer after those of earlier languages)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(languages)), per_lang)
    x = rng.standard_normal((len(labels), num_layers * width))
    offset = {li: 0 for li in range(num_layers)}
    for i, lang in enumerate(languages):
        for li, k in signal.get(lang, {}).items():
            cols = li * width + offset[li] + np.arange(k)
            offset[li] += k
            x[np.ix_(labels == i, cols)] += strength
    return x.astype(np.float16), labels


def write_stored(root: Path, acts: np.ndarray, labels: np.ndarray, languages: list[str], num_layers: int,
                 top_k: int, ap_threshold: float) -> Path:
    """``root/neurons`` as the neuron stage writes it, from ``acts`` [N, U] and each row's language id."""
    from neuronmoe.neuron_analysis.ap import average_precision
    from neuronmoe.neuron_analysis.select import count_per_layer, select_top_k
    from neuronmoe.neuron_analysis.units import UnitLayout
    from neuronmoe.utils.manifest import describe_files

    d = Path(root) / "neurons"
    (d / "activations").mkdir(parents=True, exist_ok=True)
    width = acts.shape[1] // num_layers
    layout = UnitLayout(num_layers, MODULES, (width // 2, width - width // 2))
    for li in range(num_layers):
        np.save(d / "activations" / f"layer_{li:03d}.npy", acts[:, li * width:(li + 1) * width])
    ap = average_precision(acts, labels, num_labels=len(languages)).astype(np.float32)
    np.save(d / "ap.npy", ap)
    layout.save(d / "units.npz")
    units = layout.arrays()
    selected = select_top_k(ap, top_k, ap_threshold)
    for li, lang in enumerate(languages):
        rows = [f"{int(units['layer'][u])},{MODULES[units['module_id'][u]]},{int(units['index'][u])},{ap[u, li]:.6f}"
                for u in selected[li]]
        (d / f"selected_{lang}.csv").write_text("layer,module,index,ap\n" + "".join(r + "\n" for r in rows))
    per_layer = count_per_layer(selected, units["layer"], num_layers)
    (d / "counts.json").write_text(json.dumps({"languages": languages, "num_layers": num_layers,
                                               "per_layer": {x: per_layer[:, i].tolist() for i, x in enumerate(languages)}}))
    files = ["ap.npy", "units.npz", *[f"activations/layer_{li:03d}.npy" for li in range(num_layers)]]
    counts = {lang: int((labels == i).sum()) for i, lang in enumerate(languages)}
    man = {"stage": "neurons", "config": {"model": None, "languages": languages, "metric": "ap", "top_k": top_k,
                                          "ap_threshold": ap_threshold, "num_layers": num_layers},
           "counts": {"samples": counts, "num_layers": num_layers, "units": int(acts.shape[1])},
           "files": describe_files(d, files)}
    (d / "manifest.json").write_text(json.dumps(man))
    return d
