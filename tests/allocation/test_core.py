"""The pure core: paper fixtures, degenerate cases, validation, properties."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.paper_tables import TABLE2_NEURONMOE_PRINTED, TABLE5, TABLE6

from neuronmoe.allocation import (
    allocate,
    layermoe_allocate,
    load_allocation,
    multi_scores,
    pair_scores,
    source_only_scores,
    uniform_allocation,
)


def test_table5_floor_gives_published_49_layer_by_layer():
    e = allocate(TABLE5, e_min=1, e_max=6, rounding="floor")
    assert sum(e) == 49
    # Table 2 as printed, with its single middle 2 moved from layer 18 to layer 16 (count 81)
    expected = list(TABLE2_NEURONMOE_PRINTED)
    expected[16], expected[18] = 2, 1
    assert e == expected
    assert e[16] == 2 and e[18] == 1 and TABLE5[16] == 81
    assert e == load_allocation("llama-3.2-3b-el-neuronmoe").experts_per_layer


def test_table5_round_gives_52():
    e = allocate(TABLE5, rounding="round")
    assert sum(e) == 52
    assert [i for i in range(28) if e[i] != allocate(TABLE5)[i]] == [22, 24, 25]


def test_default_rounding_is_floor():
    assert allocate(TABLE5) == allocate(TABLE5, rounding="floor")


def test_table6_english_alone_gives_neuronmoe_en_37():
    assert sum(allocate(TABLE6["en"])) == 37
    assert sum(allocate(TABLE6["en"], rounding="round")) == 40
    assert allocate(TABLE6["en"]) == load_allocation("llama-3.2-3b-el-neuronmoe-en").experts_per_layer


@pytest.mark.parametrize("lang", ["el", "tr"])
def test_table6_sums_reproduce_table8(lang):
    # the union is at most the sum; for el and tr the sum already gives the published rows
    s = [a + b for a, b in zip(TABLE6["en"], TABLE6[lang])]
    assert allocate(s) == load_allocation(f"llama-3.2-3b-{lang}-neuronmoe").experts_per_layer


def test_min_is_over_nonzero_scores_and_zero_layers_get_emin():
    # min over non-zero = 10: (20-10)*5/50 = 1 -> 2; with min 0 it would be floor(1.67) -> 2 and 10 -> 1
    assert allocate([0, 10, 20, 60]) == [1, 1, 2, 6]
    assert allocate([0, 10, 40, 60]) == [1, 1, 4, 6]  # min 0 would give floor(3.33)+1 = 4 too, but 10 -> 1 not 1.83
    assert allocate([0, 12, 60]) == [1, 1, 6]


def test_exact_boundary_is_not_lost_to_float_error():
    # (S - min) * span / range lands exactly on integers: no 2.9999 -> 2
    s = [1, 1 + 3 * 7, 1 + 5 * 7]  # range 35, span 5: 21*5/35 = 3
    assert allocate(s) == [1, 4, 6]
    s = [3, 3 + 0.6 * 10, 13]
    assert allocate(s) == [1, 4, 6]


def test_round_is_half_up():
    # (S-min)*5/range = 2.5 -> 3 (not banker's 2)
    assert allocate([10, 15, 20], e_min=1, e_max=6, rounding="round") == [1, 4, 6]
    assert allocate([10, 15, 20], rounding="floor") == [1, 3, 6]


@pytest.mark.parametrize(
    "scores,expected",
    [
        ([0, 0, 0], [1, 1, 1]),  # no signal anywhere: dense everywhere
        ([7, 7, 7], [6, 6, 6]),  # all equal (and non-zero): every layer is at the maximum
        ([7, 0, 7], [6, 1, 6]),
        ([5], [6]),  # a single layer with a score
        ([0], [1]),
    ],
)
def test_degenerate_cases_are_defined(scores, expected):
    assert allocate(scores, 1, 6) == expected


def test_custom_bounds_and_clip():
    e = allocate(TABLE5, e_min=2, e_max=4)
    assert min(e) == 2 and max(e) == 4 and e[0] == 4
    assert allocate([1, 2, 3], e_min=3, e_max=3) == [3, 3, 3]


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(e_min=0), "e-min"),
        (dict(e_min=3, e_max=2), "e-max"),
        (dict(rounding="ceil"), "rounding"),
        (dict(e_min=1.5), "e-min"),
    ],
)
def test_bad_bounds_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        allocate([1, 2, 3], **kw)


def test_bad_scores_are_clear_errors():
    with pytest.raises(ValueError, match="layer 1"):
        allocate([1, -2, 3])
    with pytest.raises(ValueError, match="layer 0"):
        allocate([math.nan, 2])
    with pytest.raises(ValueError, match="empty"):
        allocate([])


scores_st = st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=40)
bounds_st = st.tuples(st.integers(1, 4), st.integers(0, 6)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(scores=scores_st, bounds=bounds_st, rounding=st.sampled_from(["floor", "round"]))
def test_property_every_value_within_bounds(scores, bounds, rounding):
    e = allocate(scores, *bounds, rounding=rounding)
    assert len(e) == len(scores)
    assert all(bounds[0] <= x <= bounds[1] and isinstance(x, int) for x in e)
    if any(scores):
        assert e[scores.index(max(scores))] == bounds[1]  # the top layer always gets E_max


@settings(max_examples=300, deadline=None)
@given(scores=scores_st, data=st.data(), bounds=bounds_st, rounding=st.sampled_from(["floor", "round"]))
def test_property_more_units_never_fewer_experts(scores, data, bounds, rounding):
    layer = data.draw(st.integers(0, len(scores) - 1))
    extra = data.draw(st.integers(1, 500))
    before = allocate(scores, *bounds, rounding=rounding)
    more = list(scores)
    more[layer] += extra
    after = allocate(more, *bounds, rounding=rounding)
    assert after[layer] >= before[layer]


unit_st = st.tuples(st.integers(0, 3), st.sampled_from(["q_proj", "gate_proj", "down_proj"]), st.integers(0, 20))


@settings(max_examples=200, deadline=None)
@given(src=st.lists(unit_st, max_size=30), tgt=st.lists(unit_st, max_size=30), layer=st.integers(0, 3),
       added=st.lists(st.tuples(st.sampled_from(["q_proj", "up_proj"]), st.integers(0, 20)), min_size=1, max_size=10),
       to_source=st.booleans())
def test_property_selecting_more_units_is_monotone_in_pair_mode(src, tgt, layer, added, to_source):
    """More selected units in a layer (either language, other layers unchanged) never fewer experts there."""
    new_units = [(layer, m, i) for m, i in added]
    before_s = pair_scores(src, tgt, 4)
    after_s = pair_scores(src + new_units, tgt, 4) if to_source else pair_scores(src, tgt + new_units, 4)
    assert after_s[layer] >= before_s[layer]
    assert [a for i, a in enumerate(after_s) if i != layer] == [b for i, b in enumerate(before_s) if i != layer]
    assert allocate(after_s)[layer] >= allocate(before_s)[layer]


def test_unit_identity_is_layer_module_index():
    src = [(0, "q_proj", 17), (0, "gate_proj", 17), (1, "up_proj", 3)]
    tgt = [(0, "q_proj", 17), (0, "k_proj", 17), (1, "up_proj", 4), (1, "up_proj", 3)]
    # layer 0: q17, gate17, k17 (q17 shared) = 3; layer 1: up3, up4 = 2
    assert pair_scores(src, tgt, 2) == [3, 2]
    assert source_only_scores(src, 2) == [2, 1]
    assert multi_scores(src, {"el": tgt, "tr": [(1, "o_proj", 0)]}, 2) == [2 + (2 + 0) / 2, 1 + (2 + 1) / 2]


def test_unit_outside_layers_is_an_error():
    with pytest.raises(ValueError, match="outside layers 0..1"):
        pair_scores([(2, "q_proj", 0)], [], 2)


def test_layermoe_formula():
    # E_l = ceil((1/S_l) / sum(1/S) * B)
    s = [0.5, 0.25, 1.0]
    inv = [2, 4, 1]
    b = 10
    assert layermoe_allocate(s, b) == [math.ceil(x / 7 * b) for x in inv] == [3, 6, 2]
    # equal similarities, B divisible by layers: exactly B/L each despite float noise
    assert layermoe_allocate([0.3] * 28, 56) == [2] * 28
    assert layermoe_allocate([0.9] * 3, 1) == [1, 1, 1]  # never below 1


def test_layermoe_rejects_nonpositive_similarity_and_budget():
    with pytest.raises(ValueError, match="layer.*1"):
        layermoe_allocate([0.5, -0.1, 0.2], 10)
    with pytest.raises(ValueError, match="budget"):
        layermoe_allocate([0.5], 0)


def test_uniform():
    assert uniform_allocation(4, 3) == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="--num-experts"):
        uniform_allocation(4, 0)
