"""The allocation gate: a computed allocation that differs from the paper's stops the paper run before any
training, with the per-layer difference; --accept-allocation-diff lets it through and the report records it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.paper_tables import TABLE5

from neuronmoe.cli import main
from neuronmoe.pipeline.gate import DIFFERS, MATCHES, NO_REFERENCE, compare, gate_command, report_lines

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _standin_analysis(root: Path, per_layer: list[int]) -> None:
    """neurons/ in the neuron stage's format (docs/CONTRACTS.md) whose EN+EL unique units per layer are ``per_layer``
    (English holds them all; Greek shares one)."""
    en = [(layer, MODULES[i % 7], i) for layer, n in enumerate(per_layer) for i in range(n)]
    units = {"en": en, "el": en[:1]}
    d = root / "neurons"
    d.mkdir(parents=True)
    for lang, us in units.items():
        d.joinpath(f"selected_{lang}.csv").write_text("layer,module,index,ap\n" + "".join(f"{a},{b},{c},0.9\n" for a, b, c in us))
    n = len(per_layer)
    d.joinpath("counts.json").write_text(json.dumps({"languages": list(units), "num_layers": n, "per_layer": {
        lang: [sum(1 for u in us if u[0] == layer) for layer in range(n)] for lang, us in units.items()}}))
    d.joinpath("manifest.json").write_text(json.dumps({"stage": "neurons", "config": {
        "model": "llama-3.2-3b", "languages": list(units), "num_layers": n, "top_k": 1000}}))


def _allocate(root: Path) -> int:
    return main(["allocate", "--output-dir", str(root), "--model", "llama-3.2-3b", "--mode", "pair", "--source", "en",
                 "--targets", "el", "--name", "neuronmoe-el"])


def test_the_gate_comes_after_the_allocations_and_before_any_training():
    from neuronmoe.pipeline.paper import paper_plan

    sub = [c[1] if c[0] == "neuronmoe" else c[c.index("-m") + 2] for c in paper_plan(nproc=8)]
    gate = sub.index("allocation-gate")
    assert max(i for i, s in enumerate(sub) if s in ("allocate", "similarity")) < gate < sub.index("train")
    assert "allocation-gate" not in [c[1] for c in paper_plan(nproc=8, allocations="published") if c[0] == "neuronmoe"]
    cmd = gate_command("o", "llama-3.2-3b", {("layermoe", "el"): "layermoe", ("layermoe", "tr"): "layermoe",
                                              ("neuronmoe", "tr"): "neuronmoe-tr"}, accept=True)
    assert cmd[cmd.index("--allocations") + 1] == "layermoe=layermoe/el,neuronmoe-tr=neuronmoe/tr"
    assert cmd[-1] == "--accept-allocation-diff"


def test_stand_in_analysis_equal_to_table5_passes(tmp_path, capsys):
    _standin_analysis(tmp_path, TABLE5)
    assert _allocate(tmp_path) == 0
    assert main(["allocation-gate", "--output-dir", str(tmp_path), "--allocations", "neuronmoe-el=neuronmoe/el"]) == 0
    rec = json.loads((tmp_path / "pipeline" / "allocation_gate.json").read_text())
    assert rec["decision"] == "passed" and rec["allocations"]["neuronmoe-el"]["status"] == MATCHES
    assert rec["allocations"]["neuronmoe-el"]["computed_total"] == 49


def test_a_computed_allocation_that_differs_from_table2_stops_before_training(tmp_path, capsys):
    counts = list(TABLE5)
    counts[10] = 300  # the stand-in analysis finds many Greek units in layer 10 (Table 5: 7)
    _standin_analysis(tmp_path, counts)
    assert _allocate(tmp_path) == 0
    capsys.readouterr()
    argv = ["allocation-gate", "--output-dir", str(tmp_path), "--allocations", "neuronmoe-el=neuronmoe/el"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "allocation gate: neuronmoe-el:" in err and "vs the paper's 49" in err and "layer 10 " in err
    assert "No training has started" in err and "--accept-allocation-diff" in err and len(err.strip().splitlines()) == 1
    rec = json.loads((tmp_path / "pipeline" / "allocation_gate.json").read_text())
    assert rec["decision"] == "stopped" and not (tmp_path / "train").exists()
    diff = {d["layer"]: d for d in rec["allocations"]["neuronmoe-el"]["differences"]}
    assert diff[10]["paper"] == 1 and diff[10]["computed"] > 1
    # accepted: the run goes on, and the report says what was trained and how it differs
    assert main([*argv, "--accept-allocation-diff"]) == 0
    rec = json.loads((tmp_path / "pipeline" / "allocation_gate.json").read_text())
    assert rec["decision"] == "accepted" and rec["differ"] == ["neuronmoe-el"]
    text = "\n".join(report_lines(tmp_path))
    assert "trained although they differ from the paper's" in text and "layer 10 " in text


def test_no_paper_reference_and_other_cases(tmp_path):
    assert compare([2, 1, 3], None)["status"] == NO_REFERENCE
    c = compare([2, 1, 3], [2, 2, 3])
    assert c["status"] == DIFFERS and c["differences"] == [{"layer": 1, "computed": 1, "paper": 2, "diff": -1}]
    assert compare([2, 1], [2, 1, 3])["status"] == DIFFERS  # another model's layer count: not the paper's
    (tmp_path / "allocation").mkdir()
    bn = {"experts_per_layer": [2] * 28, "total_experts": 56, "mode": "pair", "name": "neuronmoe-bn"}
    (tmp_path / "allocation" / "neuronmoe-bn.json").write_text(json.dumps(bn))
    assert main(["allocation-gate", "--output-dir", str(tmp_path), "--allocations", "neuronmoe-bn=neuronmoe/bn"]) == 0
    rec = json.loads((tmp_path / "pipeline" / "allocation_gate.json").read_text())
    assert rec["allocations"]["neuronmoe-bn"]["status"] == "no paper reference" and rec["decision"] == "passed"


@pytest.mark.parametrize("item, match", [("neuronmoe-el", "expected NAME=KIND/TARGET"),
                                         ("x=unknown/el", "expected NAME=KIND/TARGET"),
                                         ("../x=neuronmoe/el", "path separator")])
def test_bad_items_and_missing_allocations_are_one_line_errors(tmp_path, capsys, item, match):
    assert main(["allocation-gate", "--output-dir", str(tmp_path), "--allocations", item]) == 2
    assert match in capsys.readouterr().err
    assert main(["allocation-gate", "--output-dir", str(tmp_path), "--allocations", "neuronmoe-el=neuronmoe/el"]) == 2
    assert "run the allocation" in capsys.readouterr().err and not (tmp_path / "pipeline").exists()
