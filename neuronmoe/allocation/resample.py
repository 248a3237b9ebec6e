"""Replicate allocations from the stored activations: resample sentences, recompute AP, select, allocate.

A *pass* is one set of replicates: the bootstrap (each language's sentences drawn with replacement, as many
as there are) or one sample size (``n`` sentences per language drawn without replacement). A replicate is a
vector of integer weights over the stored rows; its AP comes from
:func:`neuron_analysis.weighted_ap <neuronmoe.neuron_analysis.weighted_ap>` (bit for bit the AP of the
materialised resample) with every unit sorted once for all passes.

Shortcut, verified: a unit can only be selected in a replicate when its replicate AP reaches that replicate's
cutoff (the top-k value, or the AP threshold). Replicate AP is computed for the *candidates*, the units whose
full-sample AP lies within ``margin`` of the full-sample cutoff of a language the allocation uses; the first
``verify`` replicates of each pass are also computed over every unit, and the selection from the candidates
must equal the selection from every unit there. When it does not, the margin doubles and the pass is computed
again (a margin of 1 or more takes every unit: the exact computation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neuronmoe.neuron_analysis.stored import StoredNeurons


@dataclass(frozen=True)
class Rule:
    """How selected units become an allocation: everything the trained allocation used."""

    mode: str
    source: str
    targets: tuple[str, ...]
    e_min: int
    e_max: int
    rounding: str
    top_k: int
    ap_threshold: float

    @property
    def languages(self) -> list[str]:
        """The languages whose selection the allocation reads."""
        return [self.source] if self.mode == "source-only" else [self.source, *self.targets]

    def with_thresholds(self, top_k: int, ap_threshold: float) -> Rule:
        from dataclasses import replace

        return replace(self, top_k=int(top_k), ap_threshold=float(ap_threshold))


def select(ap: np.ndarray, units: np.ndarray, top_k: int, threshold: float) -> np.ndarray:
    """Global unit numbers of the ``top_k`` best of ``units`` (ascending) by ``ap`` (float32, one per unit) that
    lie above ``threshold``: the neuron stage's rule (ties: the lower unit number first)."""
    from neuronmoe.neuron_analysis.select import select_top_k

    return units[select_top_k(np.asarray(ap, dtype=np.float32)[:, None], top_k, threshold)[0]]


def layer_scores(rule: Rule, sel: dict[str, np.ndarray], unit_layer: np.ndarray, n_layers: int) -> list[Any]:
    """The allocation's per-layer score from selected unit numbers (as :mod:`neuronmoe.allocation.core` does from
    the selected_<lang>.csv units): pair |source U target|, multi |source| + mean |target|, source-only |source|."""
    def count(units: np.ndarray) -> np.ndarray:
        return np.bincount(unit_layer[units], minlength=n_layers)

    if rule.mode == "pair":
        return count(np.union1d(sel[rule.source], sel[rule.targets[0]])).tolist()
    if rule.mode == "multi":
        src = count(sel[rule.source])
        per_t = [count(sel[t]) for t in rule.targets]
        return [int(src[li]) + sum(int(p[li]) for p in per_t) / len(per_t) for li in range(n_layers)]
    return count(sel[rule.source]).tolist()


def allocation_of(rule: Rule, sel: dict[str, np.ndarray], unit_layer: np.ndarray, n_layers: int) -> list[int]:
    from neuronmoe.allocation.core import allocate

    return allocate(layer_scores(rule, sel, unit_layer, n_layers), rule.e_min, rule.e_max, rule.rounding)


def full_selection(stored: StoredNeurons, rule: Rule) -> dict[str, np.ndarray]:
    """The selection of every language the rule reads, from the stage's own ``ap.npy``."""
    units = np.arange(stored.num_units)
    return {lang: select(stored.ap[:, stored.languages.index(lang)], units, rule.top_k, rule.ap_threshold)
            for lang in rule.languages}


def resample_weights(labels: np.ndarray, replicates: int, seed: int, size: int | None = None) -> np.ndarray:
    """[R, N] integer weights: per language, its rows drawn with replacement (``size`` None: as many as there are)
    or ``size`` of them without replacement. Replicate ``r`` depends on ``(seed, size, r)`` only."""
    n = len(labels)
    out = np.zeros((replicates, n), dtype=np.int32)
    groups = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    for r in range(replicates):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(size or 0), r]))
        for rows in groups:
            if size is None:
                out[r] += np.bincount(rng.choice(rows, len(rows), replace=True), minlength=n).astype(np.int32)
            else:
                out[r, rng.choice(rows, size, replace=False)] = 1
    return out


@dataclass
class Pass:
    """One set of replicates and what the sweep computed for it."""

    key: str  #: "bootstrap" or "n=<size>"
    size: int | None  #: sentences per language; None: the bootstrap
    weights: np.ndarray  #: [R, N]
    margin: float
    cand: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  #: candidate units (ascending)
    wanted: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=bool))  #: [candidates, languages]
    aps: np.ndarray | None = None  #: [R, candidates, languages] float32
    check: np.ndarray | None = None  #: [verify, units, languages] float32
    widened: list[float] = field(default_factory=list)

    @property
    def replicates(self) -> int:
        return int(self.weights.shape[0])

    @property
    def exact(self) -> bool:
        return self.margin >= 1.0


def cutoffs(stored: StoredNeurons, rule: Rule) -> np.ndarray:
    """Per language of the rule: the lowest AP the full sample selects (the threshold when fewer than top-k
    units lie above it)."""
    out = []
    for lang, units in full_selection(stored, rule).items():
        ap = stored.ap[units, stored.languages.index(lang)]
        out.append(float(ap.min()) if len(units) >= rule.top_k else rule.ap_threshold)
    return np.asarray(out)


def candidates(stored: StoredNeurons, rule: Rule, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(units whose full-sample AP is within ``margin`` of a rule language's cutoff, [units, languages] which
    language's); every unit and language when ``margin`` >= 1."""
    n_lang = len(rule.languages)
    if margin >= 1.0:
        return np.arange(stored.num_units), np.ones((stored.num_units, n_lang), dtype=bool)
    cols = [stored.languages.index(lang) for lang in rule.languages]
    near = stored.ap[:, cols].astype(np.float64) >= cutoffs(stored, rule)[None, :] - margin
    units = np.flatnonzero(near.any(axis=1))
    return units, near[units]


def replicate_selections(p: Pass, rule: Rule) -> list[dict[str, np.ndarray]]:
    """Per replicate, the selected units of each rule language (from the candidates)."""
    assert p.aps is not None
    return [{lang: select(p.aps[r, :, i], p.cand, rule.top_k, rule.ap_threshold) for i, lang in enumerate(rule.languages)}
            for r in range(p.replicates)]


def verified(p: Pass, rule: Rule, sels: Sequence[dict[str, np.ndarray]]) -> bool:
    """The candidates' selection equals the selection over every unit in each verification replicate."""
    if p.exact or p.check is None:
        return True
    units = np.arange(p.check.shape[1])
    for r in range(p.check.shape[0]):
        for i, lang in enumerate(rule.languages):
            if not np.array_equal(select(p.check[r, :, i], units, rule.top_k, rule.ap_threshold), sels[r][lang]):
                return False
    return True


@dataclass
class Sweep:
    """What one pass over the stored activations needs: the passes and the compute settings."""

    stored: StoredNeurons
    rule: Rule
    verify: int
    device: Any
    progress: bool = False
    max_bytes: int = 256 << 20

    def block_units(self, replicates: int) -> int:
        """Units sorted at once: their prefix sums over ``replicates`` stay within ``max_bytes`` (few, large
        operations: each one synchronises the threads, which costs most on a busy machine)."""
        return max(8, int(self.max_bytes // (len(self.stored.labels) * (replicates * 8 + 96))))


def sweep(sw: Sweep, passes: Sequence[Pass]) -> None:
    """Fill each pass's candidate APs (every replicate; the candidates of all passes sorted once, in batches of
    ``block_units``) and, for the first ``verify`` replicates, every other unit's AP (every unit sorted once)."""
    import torch

    from neuronmoe.neuron_analysis.weighted_ap import Weights

    st, targets = sw.stored, [sw.stored.languages.index(lang) for lang in sw.rule.languages]
    lab = torch.as_tensor(st.labels, dtype=torch.int64, device=sw.device)
    for p in passes:
        p.aps = np.empty((p.replicates, len(p.cand), len(targets)), dtype=np.float32)
        p.check = None
    union = np.unique(np.concatenate([p.cand for p in passes]))
    step = sw.block_units(max(p.replicates for p in passes))
    full = [Weights(p.weights, lab, targets, sw.device) for p in passes]
    _sweep_blocks(sw, lab, candidate_batches(st, union, step),
                  lambda su, ids: [_fill(p, su, ids, w, targets) for p, w in zip(passes, full)],
                  "replicate AP (candidates)", (len(union) + step - 1) // step)
    checked = [p for p in passes if sw.verify and not p.exact]
    if not checked:
        return
    few = [Weights(p.weights[: sw.verify], lab, targets, sw.device) for p in checked]
    for p in checked:
        p.check = np.empty((sw.verify, st.num_units, len(targets)), dtype=np.float32)
        p.check[:, p.cand, :] = p.aps[: sw.verify]  # the pairs left out there (-1) are filled below
    step = sw.block_units(sw.verify)
    blocks = ((np.arange(first, first + b.shape[1]), b) for first, b in st.blocks(step))
    _sweep_blocks(sw, lab, blocks, lambda su, ids: [_check(p, su, ids, w, targets) for p, w in zip(checked, few)],
                  "replicate AP (verification, every unit)", st.num_layers * -(-st.width // step))


def candidate_batches(st: StoredNeurons, units: np.ndarray, step: int) -> Any:
    """``(unit numbers, [N, <= step] activations)`` of the given ascending units: each layer read once, the
    columns of several layers gathered into one batch."""
    ids: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for li in range(st.num_layers):
        sel = units[(units >= li * st.width) & (units < (li + 1) * st.width)]
        if not len(sel):
            continue
        layer = np.asarray(st.layers[li])
        for a in range(0, len(sel), step):
            ids.append(sel[a:a + step])
            cols.append(layer[:, sel[a:a + step] - li * st.width])
            if sum(len(x) for x in ids) >= step:
                yield np.concatenate(ids), np.concatenate(cols, axis=1)
                ids, cols = [], []
    if ids:
        yield np.concatenate(ids), np.concatenate(cols, axis=1)


def _sweep_blocks(sw: Sweep, lab: Any, blocks: Any, fill: Any, desc: str, total: int) -> None:
    """Sort each ``(unit numbers, [N, units] activations)`` block once and hand it to ``fill``."""
    from neuronmoe.neuron_analysis.weighted_ap import SortedUnits, unit_rows

    if sw.progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc=desc, unit="block", total=total)
    for ids, block in blocks:
        fill(SortedUnits(unit_rows(block, sw.device, int(ids[0])), lab), ids)


def _ap(su: Any, w: Any, targets: list[int], local: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """[R, units, languages] fp32 replicate AP of the block's units ``local`` (-1 where not ``wanted``)."""
    import torch

    rows = torch.as_tensor(local, dtype=torch.int64, device=su.order.device)
    want = torch.as_tensor(wanted, device=su.order.device)
    return su.average_precision(w, targets, rows, want).permute(1, 0, 2).cpu().numpy().astype(np.float32)


def _fill(p: Pass, su: Any, ids: np.ndarray, w: Any, targets: list[int]) -> None:
    """The batch's units that are candidates of ``p``: every replicate."""
    assert p.aps is not None
    in_c = np.isin(ids, p.cand, assume_unique=True)
    if in_c.any():
        pos = np.searchsorted(p.cand, ids[in_c])
        p.aps[:, pos, :] = _ap(su, w, targets, np.flatnonzero(in_c), p.wanted[pos])


def _check(p: Pass, su: Any, ids: np.ndarray, w: Any, targets: list[int]) -> None:
    """The block's units that are not candidates of ``p``: the verification replicates."""
    assert p.check is not None
    left = np.ones((len(ids), len(targets)), dtype=bool)  # (unit, language) pairs the candidates left out
    in_c = np.isin(ids, p.cand, assume_unique=True)
    left[in_c] = ~p.wanted[np.searchsorted(p.cand, ids[in_c])]
    some = left.any(axis=1)
    if some.any():
        got = _ap(su, w, targets, np.flatnonzero(some), left[some])
        p.check[:, ids[some], :] = np.where(left[some][None], got, p.check[:, ids[some], :])


def run_passes(sw: Sweep, passes: list[Pass]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every pass's replicate selections, each verified (a pass that fails is swept again with twice the
    margin, up to every unit)."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    todo = list(passes)
    while todo:
        for p in todo:
            p.cand, p.wanted = candidates(sw.stored, sw.rule, p.margin)
        sweep(sw, todo)
        again = []
        for p in todo:
            sels = replicate_selections(p, sw.rule)
            if verified(p, sw.rule, sels):
                out[p.key] = sels
                continue
            p.widened.append(p.margin)
            p.margin = min(1.0, 2 * p.margin)
            again.append(p)
        todo = again
    return out
