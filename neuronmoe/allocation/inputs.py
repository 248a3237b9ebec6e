"""Reading the inputs of allocation: neuron-analysis results and score CSVs (with clear errors)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from neuronmoe.allocation.core import Unit
from neuronmoe.errors import InputError, MissingInputError

SELECTED_COLUMNS = ("layer", "module", "index", "ap")


def read_neuron_manifest(neurons_dir: str | Path) -> dict[str, Any]:
    """``neurons/manifest.json``; missing = the neuron stage has not completed (clear error)."""
    from neuronmoe.utils.manifest import load_manifest

    neurons_dir = Path(neurons_dir)
    if not neurons_dir.is_dir():
        raise MissingInputError(
            f"{neurons_dir}: no neuron-analysis results (run `neuronmoe neurons` first, or point --neurons-dir at them)"
        )
    return load_manifest(neurons_dir)


def neuron_languages(neurons_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Languages with a ``selected_<lang>.csv`` (and in the manifest's language list, when it has one)."""
    neurons_dir = Path(neurons_dir)
    have = sorted(p.stem[len("selected_"):] for p in neurons_dir.glob("selected_*.csv"))
    if manifest:
        langs = (manifest.get("config") or {}).get("languages")
        if langs:
            return [lang for lang in langs if lang in have]
    return have


def _in_unit_range(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0  # NaN: False
    except ValueError:
        return False


def read_selected(neurons_dir: str | Path, lang: str, role: str = "language",
                  manifest: dict[str, Any] | None = None) -> list[Unit]:
    """Units ``(layer, module, index)`` of ``selected_<lang>.csv`` (columns layer,module,index,ap)."""
    neurons_dir = Path(neurons_dir)
    path = neurons_dir / f"selected_{lang}.csv"
    avail = neuron_languages(neurons_dir, manifest)
    if not path.exists() or (manifest and (manifest.get("config") or {}).get("languages")
                             and lang not in manifest["config"]["languages"]):
        raise MissingInputError(
            f"{role} {lang!r} has no neuron results: no {path} "
            f"(neuron analysis covered: {', '.join(avail) or 'none'}); rerun `neuronmoe neurons` with it"
        )
    from neuronmoe.utils.checks import verify_inputs
    from neuronmoe.utils.io import read_text

    # its sha256 against neurons/manifest.json: a truncated CSV is an error, not an allocation of 37 experts
    verify_inputs(neurons_dir, [path], *([manifest] if manifest is not None else []))
    units: list[Unit] = []
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    cols = tuple(reader.fieldnames or ())
    missing = [c for c in SELECTED_COLUMNS[:3] if c not in cols]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(SELECTED_COLUMNS)})")
    for lineno, row in enumerate(reader, start=2):
        try:
            layer, index = int(row["layer"]), int(row["index"])
        except (TypeError, ValueError):
            raise InputError(f"{path}:{lineno}: layer and index must be integers, got {row!r}") from None
        module = (row["module"] or "").strip()
        if not module or layer < 0 or index < 0:
            raise InputError(f"{path}:{lineno}: invalid unit {row!r}")
        ap = (row.get("ap") or "").strip()
        if ap and not _in_unit_range(ap):
            raise InputError(f"{path}:{lineno}: ap {ap!r} is out of range [0, 1] (NaN activations?); rerun "
                             f"`neuronmoe neurons --force`")
        units.append((layer, module, index))
    return units


def neurons_num_layers(neurons_dir: str | Path, manifest: dict[str, Any]) -> int | None:
    """The layer count the neuron stage recorded (manifest config, else counts.json)."""
    n = (manifest.get("config") or {}).get("num_layers")
    if n is None:
        counts = Path(neurons_dir) / "counts.json"
        if counts.exists():
            from neuronmoe.utils.io import read_json

            n = read_json(counts).get("num_layers")
    return int(n) if n is not None else None


def read_scores_csv(path: str | Path, num_layers: int | None = None, flag: str = "--scores-csv") -> list[float]:
    """``layer,score`` rows -> one score per layer; missing, duplicated or extra layers are errors."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{flag} {path}: file not found")
    from neuronmoe.utils.io import read_text

    seen: dict[int, float] = {}
    # the whole text first: a file that is not UTF-8 is one error naming it
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    cols = reader.fieldnames or []
    if "layer" not in cols or "score" not in cols:
        raise InputError(f"{flag} {path}: needs columns layer,score (found {','.join(cols) or 'none'})")
    for lineno, row in enumerate(reader, start=2):
        try:
            layer = int(row["layer"])
            score = float(row["score"])
        except (TypeError, ValueError):
            raise InputError(f"{flag} {path}:{lineno}: layer must be an integer and score a number, got {row!r}") from None
        if layer < 0:
            raise InputError(f"{flag} {path}:{lineno}: negative layer {layer}")
        if not math.isfinite(score):
            raise InputError(f"{flag} {path}:{lineno}: score {row['score']!r} is not finite")
        if layer in seen:
            raise InputError(f"{flag} {path}:{lineno}: layer {layer} appears twice")
        seen[layer] = score
    if not seen:
        raise InputError(f"{flag} {path}: no rows")
    n = num_layers if num_layers is not None else max(seen) + 1
    extra = sorted(k for k in seen if k >= n)
    if extra:
        raise InputError(
            f"{flag} {path}: layer(s) {', '.join(map(str, extra))} beyond the model's {n} layers (0..{n - 1})"
        )
    missing = [k for k in range(n) if k not in seen]
    if missing:
        raise InputError(f"{flag} {path}: missing layer(s) {', '.join(map(str, missing))} (need 0..{n - 1})")
    return [seen[k] for k in range(n)]
