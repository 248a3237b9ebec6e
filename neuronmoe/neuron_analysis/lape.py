"""LAPE (language activation probability entropy, Tang et al. 2024) over the MLP activations.

Units: the outputs of the MLP activation ``act_fn(gate_proj(x))`` of every layer
(``intermediate_size`` per layer; module name ``act_fn`` in ``units.npz``). Definition used:

* ``p[u, l]``: activation probability, the fraction of all (real, pooled) tokens of language
  ``l`` at which unit ``u``'s activation is > 0 (token-weighted over the samples).
* ``H[u]``: entropy (natural log) of ``p[u, :]`` normalised to sum to 1 over the languages
  (0 * log 0 = 0; a unit never active in any language gets the maximum entropy ``ln L``).
* ``bar``: the ``activation_quantile`` (default 0.95) quantile of all ``p`` values.
* Score ``s[u, l] = 1 - H[u] / ln L`` where ``p[u, l] > bar``, else 0: in ``[0, 1]``, 1 for a
  unit active in one language only. Selection then takes the top-K units per language by this
  score (above ``--ap-threshold``), exactly as for AP, so allocation reads either metric.

Tang et al. keep the 1% lowest-entropy units among those with some ``p`` above the 95%
quantile and assign each to the languages whose ``p`` exceeds the same quantile; the per-language
top-K by ``s`` is the same ordering restricted to one language at a time.
"""
from __future__ import annotations

import numpy as np

from neuronmoe.errors import ConfigError, InputError


def activation_probability(frac: np.ndarray, n_tokens: np.ndarray, lang_ids: np.ndarray, num_langs: int) -> np.ndarray:
    """``frac`` [N, U]: per-sample fraction of tokens with activation > 0 -> ``p`` [U, L] float64."""
    frac = np.asarray(frac)
    w = np.asarray(n_tokens, dtype=np.float64)
    out = np.zeros((frac.shape[1], num_langs), dtype=np.float64)
    for lang in range(num_langs):
        sel = np.asarray(lang_ids) == lang
        if not sel.any():
            raise InputError(f"language id {lang} has no samples")
        out[:, lang] = (w[sel] @ frac[sel].astype(np.float64)) / w[sel].sum()
    return out


def lape_scores(p: np.ndarray, activation_quantile: float = 0.95) -> tuple[np.ndarray, np.ndarray, float]:
    """-> (score [U, L], entropy [U], bar). See the module docstring."""
    p = np.asarray(p, dtype=np.float64)
    L = p.shape[1]
    if L < 2:
        raise ConfigError("LAPE needs at least two languages")
    if not 0.0 < activation_quantile < 1.0:
        raise ConfigError(f"--lape-quantile must be in (0, 1), got {activation_quantile}")
    tot = p.sum(1, keepdims=True)
    q = np.divide(p, tot, out=np.full_like(p, 1.0 / L), where=tot > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(q > 0, q * np.log(q), 0.0).sum(1)
    bar = float(np.quantile(p, activation_quantile))
    spec = 1.0 - ent / np.log(L)
    score = np.where(p > bar, spec[:, None], 0.0)
    return np.clip(score, 0.0, 1.0), ent, bar
