"""Fixtures: neuron-analysis outputs in the contract's format (docs/CONTRACTS.md), paper tables."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from support.paper_tables import TABLE5, TABLE6  # noqa: F401  (re-exported for tests)


def write_neurons(root: Path, units: dict[str, list[tuple[int, str, int]]], num_layers: int,
                  model: str | None = None, manifest: bool = True) -> Path:
    """Write selected_<lang>.csv, counts.json and manifest.json like `neuronmoe neurons` does."""
    d = Path(root) / "neurons"
    d.mkdir(parents=True, exist_ok=True)
    per_layer = {}
    for lang, us in units.items():
        with open(d / f"selected_{lang}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["layer", "module", "index", "ap"])
            for layer, module, index in us:
                w.writerow([layer, module, index, 0.9])
        per_layer[lang] = [sum(1 for u in us if u[0] == layer) for layer in range(num_layers)]
    (d / "counts.json").write_text(json.dumps({"languages": list(units), "num_layers": num_layers, "per_layer": per_layer}))
    if manifest:
        (d / "manifest.json").write_text(json.dumps({"stage": "neurons", "config": {
            "model": model, "languages": list(units), "num_layers": num_layers, "top_k": 1000}}))
    return d


@pytest.fixture
def tiny_neurons(tmp_path, tiny_model_dir):
    """3-layer tiny Llama; en and el overlap in layer 0, el adds layer 2; tr, hu small."""
    units = {
        "en": [(0, "q_proj", 1), (0, "q_proj", 2), (0, "gate_proj", 1), (1, "up_proj", 5), (2, "down_proj", 3)],
        "el": [(0, "q_proj", 1), (0, "k_proj", 9), (2, "down_proj", 3), (2, "gate_proj", 7), (2, "gate_proj", 8),
               (2, "up_proj", 7), (2, "o_proj", 0)],
        "tr": [(1, "up_proj", 6)],
    }
    write_neurons(tmp_path, units, 3, model=str(tiny_model_dir))
    return tmp_path, units


STAGE_ENV = ["BASE_MODEL_PATH", "MODE", "SOURCE_LANG", "TARGET_LANGS", "E_MIN", "E_MAX", "ROUNDING", "SCORES_CSV",
             "NUM_EXPERTS", "BUDGET", "NEURONS_DIR", "SIMILARITY_DIR", "ALLOCATION_NAME", "ALLOCATION_OUT",
             "REFERENCE_ALLOCATION", "COMPARE_WITH", "ALLOCATION_FIGURE", "OUTPUT_DIR"]


@pytest.fixture(autouse=True)
def _clean_stage_env(monkeypatch):
    for k in STAGE_ENV:
        monkeypatch.delenv(k, raising=False)
