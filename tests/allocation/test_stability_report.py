"""The stability section of the reports, and the threshold table on the paper's published counts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from support.paper_tables import TABLE5

from neuronmoe.allocation.stability import agreement, interval, layer_stats, stability_path, wilson
from neuronmoe.allocation.stability_report import (
    count_margins,
    published_sensitivity,
    report_section,
    sensitivity_table,
    stability_markdown,
)


def test_published_counts_fill_only_the_published_cell():
    d = published_sensitivity()
    cells = {(c["top_k"], c["ap_threshold"]): c for c in d["cells"]}
    assert cells[(1000, 0.5)]["total_experts"] == 49 and cells[(1000, 0.5)]["changed_layers"] == []
    assert all(c["total_experts"] is None and c["note"] == "not published" for k, c in cells.items() if k != (1000, 0.5))
    table = "\n".join(sensitivity_table(d))
    assert "| 1000 | not published | 49 (no layer changes) (trained) | not published |" in table


def test_count_margins_of_table5():
    m = {x["layer"]: x for x in count_margins(TABLE5)}
    # E = 1 + floor((S - 6) * 5 / 336): layer 16 (81 -> 2 experts) drops to 1 below 73.2 and reaches 3 at 140.4
    assert (m[16]["experts"], m[16]["lose"], m[16]["gain"]) == (2, 8, 60)
    # layer 21 (232 -> 4): 3 below 207.6, 5 at 274.8
    assert (m[21]["experts"], m[21]["lose"], m[21]["gain"]) == (4, 25, 43)
    # layer 0 is the maximum: losing units moves the maximum and changes other layers
    assert m[0]["lose"] is not None and m[0]["gain"] is not None
    for x in m.values():  # brute force: the first change really is there, and not one unit earlier
        from neuronmoe.allocation import allocate

        base = allocate(TABLE5)
        for sign, key in ((-1, "lose"), (1, "gain")):
            if x[key] is None:
                continue
            for d, want_change in ((x[key], True), (x[key] - 1, False)):
                trial = list(TABLE5)
                trial[x["layer"]] += sign * d
                assert (allocate(trial) != base) == want_change or d == 0


def test_statistics_helpers():
    assert wilson(10, 10)[1] == 1.0 and 0.75 < wilson(10, 10)[0] < 0.9
    assert wilson(0, 20)[0] == 0.0
    assert interval(np.array([1] * 95 + [2] * 5)) == [1, 1]  # 5 % at 2: inside the upper tail
    assert interval(np.array([1] * 90 + [2] * 10)) == [1, 2]
    e = np.array([[1, 2], [1, 3], [1, 2], [2, 2]])
    a = agreement(e, [1, 2])
    assert (a["p_equal"], a["equal"]) == (0.5, 2) and a["mean_abs_change"] == pytest.approx((0 + 0.5 + 0 + 0.5) / 4)
    layers = layer_stats(e, [1, 2])
    assert layers[0]["mode"] == 1 and layers[0]["share_at_mode"] == 0.75 and layers[0]["counts"] == {"1": 3, "2": 1}
    assert layers[1]["p_trained"] == 0.75 and layers[1]["uncertain"]


def _stab(tmp_path):
    return {"allocation": "neuronmoe", "experts_per_layer": [3, 1], "sentences_per_language": {"en": 200, "el": 200},
            "bootstrap": {"replicates": 100, "p_equal": 0.62, "p_equal_interval90": [0.54, 0.70], "equal": 62,
                          "mean_abs_change": 0.2, "mean_abs_change_se": 0.02,
                          "total": {"trained": 4, "median": 4.0, "interval90": [4, 5], "counts": {"4": 62, "5": 38}},
                          "layers": [{"layer": 0, "trained": 3, "mode": 3, "share_at_mode": 0.62, "p_trained": 0.62,
                                      "interval90": [3, 4], "uncertain": True, "counts": {"3": 62, "4": 38}},
                                     {"layer": 1, "trained": 1, "mode": 1, "share_at_mode": 1.0, "p_trained": 1.0,
                                      "interval90": [1, 1], "uncertain": False, "counts": {"1": 100}}],
                          "uncertain_layers": [0], "units": {"stable_share": 0.71}},
            "sample_sizes": [{"n": 50, "replicates": 100, "p_equal": 0.1, "p_equal_interval90": [0.06, 0.16], "equal": 10,
                              "mean_abs_change": 0.9, "mean_abs_change_se": 0.05,
                              "total": {"median": 5.0, "interval90": [4, 7]}}],
            "figures": [str(tmp_path / "figures" / "allocation_neuronmoe_sample_sizes.png")],
            "sensitivity": {"top_k": [1000], "ap_thresholds": [0.5], "trained": {"top_k": 1000, "ap_threshold": 0.5},
                            "cells": [{"top_k": 1000, "ap_threshold": 0.5, "total_experts": 4, "changed_layers": []}]}}


def test_markdown_states_probability_uncertain_layers_sizes_and_grid(tmp_path):
    md = stability_markdown(_stab(tmp_path))
    assert "equals the trained one in **62% (90% CI 54-70%, 62/100)**" in md
    assert "| 0 | 3 | 3 (62%) | 62% | 3-4 | 3: 62, 4: 38 |" in md
    assert "| 1 | 1 |" not in md  # a certain layer is not listed
    assert "| 50 | 10% (90% CI 6-16%, 10/100) | 0.900 ± 0.050 | 5 (4-7) |" in md
    assert "![sample sizes](figures/allocation_neuronmoe_sample_sizes.png)" in md
    assert "| 1000 | 4 (no layer changes) (trained) |" in md
    assert "71% of the selected units" in md


def test_report_section_reads_the_files_beside_the_allocations(tmp_path):
    from neuronmoe.allocation import write_allocation

    j, _ = write_allocation({"name": "neuronmoe", "experts_per_layer": [3, 1]}, tmp_path / "allocation" / "neuronmoe.json")
    assert report_section(tmp_path, ["neuronmoe", "layermoe"]) == []
    stability_path(j).write_text(json.dumps(_stab(tmp_path)))
    lines = report_section(tmp_path, ["neuronmoe", "layermoe"])
    assert lines[0].startswith("## How much to trust the allocations") and "### How stable is `neuronmoe`?" in lines[2]


def test_the_stability_file_is_part_of_the_layout(tmp_path):
    from neuronmoe.layout import TREE, Layout

    assert any(p == "allocation/<name>.stability.json" and c == "allocate" for p, c, _ in TREE)
    lay = Layout(tmp_path)
    assert lay.stability("neuronmoe") == stability_path(lay.allocation("neuronmoe"))
