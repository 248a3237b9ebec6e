"""The pure core of expert allocation: layer scores -> experts per layer.

Everything here works on plain Python/NumPy values (no model, no files) so it can be tested
exhaustively. ``E`` always counts the frozen original MLP as expert 0: ``E_l = 1`` means the
layer stays dense (no router, no new expert).

Score builders (one score per decoder layer):

* :func:`pair_scores` - paper eq. 2: unique units in the union of the source's and ONE
  target's selected units (a unit is ``(layer, module, index)``).
* :func:`multi_scores` - the published "3lang" mode: ``|source| + mean_t |target_t|``.
* :func:`source_only_scores` - NeuronMoE-EN ablation: ``|source|``.

Mappings:

* :func:`allocate` - paper eq. 3-4, min-max normalisation between ``E_min`` and ``E_max``
  (min over the NON-ZERO scores, result clipped), ``floor`` (default, reproduces the
  published allocations) or ``round`` (half up, the paper's text).
* :func:`layermoe_allocate` - LayerMoE: ``E_l = ceil((1/S_l) / sum_j(1/S_j) * B)``.
* :func:`uniform_allocation` - ``N`` experts in every layer.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from neuronmoe.errors import ConfigError, InputError

Unit = tuple[int, str, int]  # (layer, module, index)

ROUNDING_CHOICES = ("floor", "round")
#: most experts one layer may have (expert 0 included): far above any allocation of the paper (E_max = 6) or of
#: fine-grained MoEs (256); a count above it is a mistake (an allocation of 100,000 experts per layer)
MAX_EXPERTS_PER_LAYER = 256
#: largest per-layer score: scores are unit counts, fractions or similarities; 1e308 overflowed eq. 3-4
MAX_SCORE = 1e15
MODES = ("pair", "multi", "source-only", "uniform", "similarity", "scores-csv")


def bound_problem(e_min: int, e_max: int | None) -> tuple[str, str] | None:
    """``(field, problem)`` when ``E_min >= 1`` (expert 0 is the original MLP) and ``E_max >= E_min``, both
    integers, do not hold; else None."""
    if isinstance(e_min, bool) or not isinstance(e_min, int) or e_min < 1:
        return "e_min", (f"must be an integer >= 1 (E counts the frozen original MLP as expert 0; 1 = dense layer), "
                         f"got {e_min!r}")
    if e_max is not None and (isinstance(e_max, bool) or not isinstance(e_max, int) or e_max < e_min):
        return "e_max", f"must be an integer >= --e-min ({e_min}), got {e_max!r}"
    if max(e_min, e_max or 0) > MAX_EXPERTS_PER_LAYER:
        which = "e_max" if (e_max or 0) > MAX_EXPERTS_PER_LAYER else "e_min"
        return which, (f"{e_max if which == 'e_max' else e_min} is out of range [1, {MAX_EXPERTS_PER_LAYER}] "
                       f"(experts per layer)")
    return None


def check_bounds(e_min: int, e_max: int | None) -> None:
    """:func:`bound_problem` as a :class:`ConfigError` naming ``--e-min`` or ``--e-max``."""
    problem = bound_problem(e_min, e_max)
    if problem:
        raise ConfigError(f"--{problem[0].replace('_', '-')}: {problem[1]}")


def _check_scores(scores: Sequence[float]) -> list[float]:
    vals = [float(s) for s in scores]
    if not vals:
        raise InputError("scores: empty (need one score per decoder layer)")
    for i, v in enumerate(vals):
        if not math.isfinite(v) or v < 0 or v > MAX_SCORE:
            raise InputError(f"scores: layer {i} has score {v!r}; scores must be finite, in [0, {MAX_SCORE:g}]")
    return vals


def allocate(
    scores: Sequence[float],
    e_min: int = 1,
    e_max: int = 6,
    rounding: str = "floor",
) -> list[int]:
    """Experts per layer from per-layer scores (paper eq. 3-4).

    ``E_l = clip(E_min + R((S_l - m) * (E_max - E_min) / (M - m)), E_min, E_max)`` where
    ``m`` is the minimum over the non-zero scores, ``M`` the maximum, and ``R`` is ``floor``
    (truncation, as the published code; the default) or ``round`` (half up). The product is
    taken before the division so that integer counts at an exact boundary do not fall below
    it through floating-point error.

    Defined degenerate cases (no division by zero):

    * all scores zero: every layer gets ``E_min`` (no evidence for extra capacity anywhere);
    * all non-zero scores equal (this includes a single layer with a non-zero score): those
      layers get ``E_max`` (each is at the maximum), zero-score layers ``E_min``.
    """
    check_bounds(e_min, e_max)
    if rounding not in ROUNDING_CHOICES:
        raise ConfigError(f"--rounding: must be one of {', '.join(ROUNDING_CHOICES)}, got {rounding!r}")
    vals = _check_scores(scores)
    nonzero = [v for v in vals if v > 0]
    if not nonzero:
        return [e_min] * len(vals)
    lo, hi = min(nonzero), max(nonzero)
    span = e_max - e_min
    out = []
    for v in vals:
        if v <= 0:
            out.append(e_min)
            continue
        if hi == lo:
            out.append(e_max)
            continue
        x = (v - lo) * span / (hi - lo)
        step = math.floor(x) if rounding == "floor" else math.floor(x + 0.5)
        out.append(int(min(max(e_min + step, e_min), e_max)))
    return out


def layermoe_allocate(similarity: Sequence[float], budget: float, tol: float = 1e-9) -> list[int]:
    """LayerMoE (Zhang et al. 2025): experts inversely proportional to layer similarity.

    ``E_l = ceil((1/S_l) / sum_j(1/S_j) * B)``; a value within ``tol`` above an integer counts
    as that integer (floating-point noise). Every ``S_l`` must be > 0, since a non-positive mean
    cosine similarity has no inverse that means "needs more capacity".
    """
    if not similarity:
        raise InputError("similarity scores: empty (need one per decoder layer)")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise ConfigError(f"--budget: must be a positive number, got {budget!r}")
    sims = [float(s) for s in similarity]
    bad = [i for i, s in enumerate(sims) if not math.isfinite(s) or s <= 0]
    if bad:
        raise InputError(
            f"similarity scores: layer(s) {', '.join(map(str, bad))} have a non-positive or non-finite "
            f"similarity ({', '.join(f'{sims[i]:.4g}' for i in bad)}); LayerMoE needs S_l > 0"
        )
    inv = [1.0 / s for s in sims]
    total = sum(inv)
    return [max(1, int(math.ceil(v / total * budget - tol))) for v in inv]


def uniform_allocation(num_layers: int, num_experts: int) -> list[int]:
    if num_layers < 1:
        raise InputError(f"num_layers must be >= 1, got {num_layers}")
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise ConfigError(f"--num-experts: must be an integer >= 1 (expert 0, the original MLP, counted), got {num_experts!r}")
    return [int(num_experts)] * num_layers


# ---------------------------------------------------------------- score builders


def units_per_layer(units: Iterable[Unit], num_layers: int, lang: str = "?") -> list[set[tuple[str, int]]]:
    """Group ``(layer, module, index)`` units by layer; a unit outside ``[0, num_layers)`` is an error."""
    out: list[set[tuple[str, int]]] = [set() for _ in range(num_layers)]
    for layer, module, index in units:
        if not 0 <= int(layer) < num_layers:
            raise InputError(
                f"neuron results for {lang!r}: unit ({layer}, {module}, {index}) lies outside layers 0..{num_layers - 1}"
            )
        out[int(layer)].add((str(module), int(index)))
    return out


def pair_scores(source_units: Iterable[Unit], target_units: Iterable[Unit], num_layers: int) -> list[int]:
    """Paper eq. 2: ``S_l = |N_l,source U N_l,target|`` with units keyed by (layer, module, index)."""
    s = units_per_layer(source_units, num_layers, "source")
    t = units_per_layer(target_units, num_layers, "target")
    return [len(a | b) for a, b in zip(s, t)]


def source_only_scores(source_units: Iterable[Unit], num_layers: int) -> list[int]:
    """NeuronMoE-EN ablation: ``S_l = |N_l,source|``."""
    return [len(a) for a in units_per_layer(source_units, num_layers, "source")]


def multi_scores(
    source_units: Iterable[Unit], targets_units: Mapping[str, Iterable[Unit]], num_layers: int
) -> list[float]:
    """The published "3lang" mode: ``S_l = |N_l,source| + mean over targets of |N_l,t|``."""
    if not targets_units:
        raise ConfigError("--mode multi: needs at least one target language")
    src = source_only_scores(source_units, num_layers)
    per_t = [[len(a) for a in units_per_layer(u, num_layers, t)] for t, u in targets_units.items()]
    return [src[l] + sum(p[l] for p in per_t) / len(per_t) for l in range(num_layers)]
