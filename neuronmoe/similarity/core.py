"""LayerMoE similarity, the pure part: mean pairwise cosine without an N x N matrix.

For token vectors ``a_1..a_n`` (language A) and ``b_1..b_m`` (language B) in one layer,

    mean_{i,j} cos(a_i, b_j) = mean_{i,j} (a_i/|a_i|) . (b_j/|b_j|) = u_A . u_B,

where ``u_A`` is the mean of A's unit vectors. So each language only needs a running sum of
unit vectors per layer (float64) and a token count; ``sim[l, A, B] = u_A . u_B``. The diagonal
``sim[l, A, A] = |u_A|^2`` is the mean over all ``n^2`` ordered pairs of A's tokens, self-pairs
included.

Layer score (documented in docs/allocation.md): the mean of ``sim[l, A, B]`` over the unordered
pairs of DISTINCT languages ``{A, B}`` in which at least one is new, i.e. the new-new and new-old
pairs, each pair weighted equally (old-old pairs are left out). With one new and one old
language this is just ``sim[l, new, old]``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


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
            raise ValueError(f"similarity: no tokens captured for language(s) {', '.join(empty)}")
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
        raise ValueError(f"new language(s) {', '.join(missing)} not among the measured languages {', '.join(langs)}")
    pairs = []
    for i in range(len(langs)):
        for j in range(i + 1, len(langs)):
            if langs[i] in new_langs or langs[j] in new_langs:
                pairs.append((i, j))
    if not pairs:
        raise ValueError("similarity: need at least two languages, one of them new")
    return pairs


def layer_scores(sim: np.ndarray, languages: Sequence[str], new_langs: Sequence[str]) -> np.ndarray:
    """``S_l`` = mean of ``sim[l, a, b]`` over the new-new and new-old pairs (see module doc)."""
    sim = np.asarray(sim)
    if sim.ndim != 3 or sim.shape[1] != sim.shape[2] or sim.shape[1] != len(languages):
        raise ValueError(f"sim must be [num_layers, {len(languages)}, {len(languages)}], got {list(sim.shape)}")
    pairs = pair_indices(languages, new_langs)
    return np.mean([sim[:, i, j] for i, j in pairs], axis=0)
