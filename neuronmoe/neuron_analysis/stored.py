"""The neuron stage's stored results, read back for reuse without a forward pass.

``neurons/activations/layer_XXX.npy`` hold every sentence's pooled activation of every unit ([N, layer width]
fp16, rows in sample order: the languages of the manifest one after another), ``ap.npy`` the AP of every unit
for every language and ``units.npz`` each unit's layer. :func:`load_stored` checks them against the stage's
manifest (complete, same shapes, unchanged sha256) and gives back what a recomputation of AP needs: the
activations, the language of each row and the stage's selection settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from neuronmoe.errors import InputError, MissingInputError


@dataclass
class StoredNeurons:
    """Stored activations and AP of one neuron-analysis run."""

    folder: Path
    languages: list[str]
    labels: np.ndarray  #: [N] language id of every stored row
    layers: list[np.ndarray]  #: per layer [N, width] fp16 (memmaps)
    unit_layer: np.ndarray  #: [U] layer of every unit
    ap: np.ndarray  #: [U, L] float32, the stage's AP
    top_k: int
    ap_threshold: float
    inputs: dict[str, str] = field(default_factory=dict)  #: sha256 of the files read

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def width(self) -> int:
        return int(self.layers[0].shape[1])

    @property
    def num_units(self) -> int:
        return self.width * self.num_layers

    def rows_of(self, lang: str) -> np.ndarray:
        return np.flatnonzero(self.labels == self.languages.index(lang))

    def columns(self, units: np.ndarray) -> np.ndarray:
        """[N, len(units)] fp16 activations of the given (ascending) global unit numbers."""
        units = np.asarray(units, dtype=np.int64)
        out = np.empty((len(self.labels), len(units)), dtype=np.float16)
        layer = units // self.width
        for li in np.unique(layer):
            sel = np.flatnonzero(layer == li)
            out[:, sel] = self.layers[li][:, units[sel] - li * self.width]
        return out

    def blocks(self, max_units: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first unit, [N, <= max_units] fp16)`` over every unit in order, never across a layer."""
        w = self.width
        step = max(1, min(int(max_units), w))
        for li, mm in enumerate(self.layers):
            for a in range(0, w, step):
                yield li * w + a, np.asarray(mm[:, a:a + step])


def _labels(manifest: dict[str, Any], where: Path) -> tuple[list[str], np.ndarray]:
    cfg = manifest.get("config") or {}
    langs = list(cfg.get("languages") or [])
    samples = (manifest.get("counts") or {}).get("samples") or {}
    if not langs or any(lang not in samples for lang in langs):
        raise InputError(f"{where}: the manifest records no sample count per language (counts.samples); rerun "
                         f"`neuronmoe neurons`")
    return langs, np.repeat(np.arange(len(langs)), [int(samples[lang]) for lang in langs])


def load_stored(neurons_dir: str | Path, manifest: dict[str, Any] | None = None, verify: bool = True) -> StoredNeurons:
    """The stored activations and AP of ``neurons_dir`` (see the module docstring). ``verify``: compare the
    sha256 of every file read with the manifest's (an :class:`InputError` names the first that changed)."""
    from neuronmoe.neuron_analysis.collect import load_activations
    from neuronmoe.neuron_analysis.units import load_units
    from neuronmoe.utils.manifest import load_manifest

    folder = Path(neurons_dir)
    man = manifest if manifest is not None else load_manifest(folder)
    cfg = man.get("config") or {}
    if cfg.get("metric", "ap") != "ap":
        raise InputError(f"{folder}: the neuron stage ran with metric {cfg.get('metric')!r}; recomputing the "
                         "selection from stored activations needs --metric ap")
    langs, labels = _labels(man, folder / "manifest.json")
    n_layers = int((man.get("counts") or {}).get("num_layers") or cfg.get("num_layers") or 0)
    files = [folder / "ap.npy", folder / "units.npz"] + [folder / "activations" / f"layer_{i:03d}.npy" for i in range(n_layers)]
    missing = [p for p in files if not p.is_file()]
    if not n_layers or missing:
        raise MissingInputError(f"{missing[0] if missing else folder / 'activations'}: the neuron stage's stored "
                                "activations are missing; rerun `neuronmoe neurons` (they are kept under "
                                "neurons/activations/)")
    inputs = {}
    if verify:
        from neuronmoe.utils.checks import check_input_files

        inputs = check_input_files(folder, man, files)
    layers = load_activations(folder / "activations", n_layers)
    ap = np.load(folder / "ap.npy", mmap_mode="r")
    units = load_units(folder / "units.npz")
    shapes = {tuple(x.shape) for x in layers}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(labels):
        raise InputError(f"{folder / 'activations'}: layer files of shapes {sorted(shapes)} do not hold the "
                         f"{len(labels)} samples the manifest counts")
    if ap.shape != (n_layers * layers[0].shape[1], len(langs)) or len(units["layer"]) != ap.shape[0]:
        raise InputError(f"{folder / 'ap.npy'}: shape {ap.shape} does not fit {n_layers} layers x {layers[0].shape[1]} "
                         f"units and {len(langs)} languages")
    bad = ~((ap >= 0) & (ap <= 1))  # NaN fails both comparisons
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise InputError(f"{folder / 'ap.npy'}: AP {float(ap.ravel()[i])!r} of unit {i // ap.shape[1]} is out of "
                         f"range [0, 1] (NaN activations?); rerun `neuronmoe neurons --force`")
    return StoredNeurons(folder=folder, languages=langs, labels=labels, layers=layers,
                         unit_layer=np.asarray(units["layer"], dtype=np.int64), ap=np.asarray(ap, dtype=np.float32),
                         top_k=int(cfg.get("top_k", 1000)), ap_threshold=float(cfg.get("ap_threshold", 0.5)),
                         inputs=inputs)
