"""LayerMoE similarity, the pure part: mean pairwise cosine without an N x N matrix.

For token vectors ``a_1..a_n`` (language A) and ``b_1..b_m`` (language B) in one layer,

    mean_{i,j} cos(a_i, b_j) = mean_{i,j} (a_i/|a_i|) . (b_j/|b_j|) = u_A . u_B,

where ``u_A`` is the mean of A's unit vectors. So each language only needs a running sum of
unit vectors per layer (float64) and a token count; ``sim[l, A, B] = u_A . u_B``. The diagonal
``sim[l, A, A] = |u_A|^2`` is the mean over all ``n^2`` ordered pairs of A's tokens, self-pairs
included.

Layer score (documented in docs/allocation.md), :data:`LAYER_SCORES`:

* ``layermoe`` (default, LayerMoE's own): the mean of two group means, the mean of ``sim[l, A, B]`` over the
  new-new pairs and the mean over the new-old pairs (a group without pairs, e.g. new-new with one new
  language, is left out); it needs at least one old language.
* ``pairs``: the mean over the unordered pairs of DISTINCT languages with at least one new language (new-new
  and new-old pairs weighted equally; old-old pairs left out).

With one new and one old language both are ``sim[l, new, old]``; they differ when the groups have different
sizes (G1: 3 new-new pairs against 9 new-old pairs).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from neuronmoe.errors import ConfigError, InputError


class UnitVectorSums:
    """Per-language, per-layer running sums of unit vectors (float64) and token counts."""

    def __init__(self, languages: Sequence[str], num_layers: int, hidden_size: int, eps: float = 1e-12):
        self.languages = list(languages)
        self.sums = np.zeros((len(self.languages), num_layers, hidden_size), dtype=np.float64)
        self.counts = np.zeros((len(self.languages), num_layers), dtype=np.int64)
        self.eps = eps

    def add(self, lang: str, layer: int, vectors: np.ndarray) -> None:
        """Add token vectors ``[n, hidden]`` of ``lang`` in ``layer`` (normalised here)."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self.sums.shape[2]:
            raise ValueError(f"vectors must be [n, {self.sums.shape[2]}], got {list(v.shape)}")
        if not len(v):
            return
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        i = self.languages.index(lang)
        self.sums[i, layer] += (v / np.maximum(norms, self.eps)).sum(axis=0)
        self.counts[i, layer] += len(v)

    def add_sum(self, lang: str, layer: int, unit_sum: np.ndarray, count: int) -> None:
        """Add an already-reduced sum of unit vectors (e.g. computed on a GPU)."""
        i = self.languages.index(lang)
        self.sums[i, layer] += np.asarray(unit_sum, dtype=np.float64)
        self.counts[i, layer] += int(count)

    def mean_unit_vectors(self) -> np.ndarray:
        """``[L_lang, num_layers, hidden]``; a language without tokens is an error."""
        empty = [self.languages[i] for i in range(len(self.languages)) if (self.counts[i] == 0).any()]
        if empty:
            raise InputError(f"similarity: no tokens captured for language(s) {', '.join(empty)}")
        return self.sums / self.counts[:, :, None]

    def similarity(self) -> np.ndarray:
        """``sim[num_layers, L_lang, L_lang]`` = mean pairwise cosine similarity."""
        u = self.mean_unit_vectors()
        return np.einsum("ali,bli->lab", u, u)


def pair_indices(languages: Sequence[str], new_langs: Sequence[str]) -> list[tuple[int, int]]:
    """Unordered pairs of distinct languages with at least one new language (new-new + new-old)."""
    langs = list(languages)
    missing = [x for x in new_langs if x not in langs]
    if missing:
        raise ConfigError(f"new language(s) {', '.join(missing)} not among the measured languages {', '.join(langs)}")
    pairs = []
    for i in range(len(langs)):
        for j in range(i + 1, len(langs)):
            if langs[i] in new_langs or langs[j] in new_langs:
                pairs.append((i, j))
    if not pairs:
        raise ConfigError("similarity: need at least two languages, one of them new")
    return pairs


LAYER_SCORES = ("layermoe", "pairs")


def layer_scores(sim: np.ndarray, languages: Sequence[str], new_langs: Sequence[str],
                 method: str = "layermoe") -> np.ndarray:
    """``S_l`` per layer from ``sim`` [layers, n, n] (see the module doc for ``method``)."""
    sim = np.asarray(sim)
    if sim.ndim != 3 or sim.shape[1] != sim.shape[2] or sim.shape[1] != len(languages):
        raise ValueError(f"sim must be [num_layers, {len(languages)}, {len(languages)}], got {list(sim.shape)}")
    if method not in LAYER_SCORES:
        raise ConfigError(f"--layer-score must be one of {', '.join(LAYER_SCORES)}, got {method!r}")
    pairs = pair_indices(languages, new_langs)
    if method == "pairs":
        return np.mean([sim[:, i, j] for i, j in pairs], axis=0)
    langs = list(languages)
    new_new = [(i, j) for i, j in pairs if langs[i] in new_langs and langs[j] in new_langs]
    new_old = [p for p in pairs if p not in new_new]
    if not new_old:
        raise ConfigError("LayerMoE's layer score needs at least one old language (the new-old group); "
                         "give --old-langs, or use --layer-score pairs")
    groups = [np.mean([sim[:, i, j] for i, j in g], axis=0) for g in (new_new, new_old) if g]
    return np.mean(groups, axis=0)


def sim_from_pairs(table: dict[tuple[str, str], Sequence[float]], languages: Sequence[str]) -> np.ndarray:
    """``sim`` [layers, n, n] from a per-pair table ``{(a, b): [S per layer]}`` (e.g. LayerMoE's published
    similarities); the diagonal and pairs not in the table are NaN (never read by :func:`layer_scores`)."""
    langs = list(languages)
    n_layers = len(next(iter(table.values())))
    sim = np.full((n_layers, len(langs), len(langs)), np.nan)
    for (a, b), vals in table.items():
        if len(vals) != n_layers:
            raise InputError(f"similarity table: pair {a}&{b} has {len(vals)} layers, expected {n_layers}")
        i, j = langs.index(a), langs.index(b)
        sim[:, i, j] = sim[:, j, i] = np.asarray(vals, dtype=np.float64)
    return sim
