"""Routing-aware, per-expert language specificity (paper Section 6.1, eq. 5-6; Tables 4/10, Figure 3).

The pure core of ``neuronmoe analyze-experts``:

* :func:`expert_units` names the units of one expert: the gate projection's pre-activation
  (``intermediate_size``), the up projection (``intermediate_size``) and the down projection's output
  (``hidden_size``) -- 8192 + 8192 + 3072 = 19,456 for Llama-3.2-3B. A unit is ``(module, index)``.
* :func:`pool_routed` turns one batch's captured expert activations into per-sentence means over the
  tokens routed to that expert (eq. 5), plus the number of such tokens per sentence.
* :func:`expert_ap` computes the AP of every unit for every language (eq. 6) from the pooled matrix,
  with an explicit policy for sentences that routed no token to the expert (see ``NO_TOKEN_POLICIES``).
* :func:`summarize` / :func:`table_rows` / :func:`to_markdown` give the high-AP counts and ratios in the
  layout of the paper's Tables 4 and 10.

Sentences with no routed token (``|T_e^(s)| = 0``): eq. 5 is undefined for them. The default policy
``exclude`` drops such a sentence from that expert's ranking, so that the unit score stays a property of
the expert's units and does not absorb the router's decision; AP is then computed over the sentences the
expert did see, and is NaN (never counted as high-AP) for a language with no positive or no negative
sentence left. Because the chance level of AP equals the positives' share among the ranked sentences,
each expert also reports its *coverage* (fraction of each language's sentences with at least one routed
token): a low coverage of one language inflates the others' AP and is flagged. ``bottom`` ranks such
sentences below every covered sentence (an expert that never sees a language then looks maximally
specific to the languages it sees: routing and unit specificity combined); ``zero`` imputes 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from neuronmoe.errors import ConfigError

#: the MLP parts of one expert, in unit order
EXPERT_MODULES = ("gate", "up", "down")
NO_TOKEN_POLICIES = ("exclude", "bottom", "zero")
DEFAULT_THRESHOLD = 0.9


def expert_name(e: int) -> str:
    """Expert 0 is the frozen original MLP (``base``); new experts are ``exp_0``, ``exp_1``, ..."""
    return "base" if e == 0 else f"exp_{e - 1}"


def expert_index(name: str) -> int:
    if name == "base":
        return 0
    if name.startswith("exp_") and name[4:].isdigit():
        return int(name[4:]) + 1
    raise ConfigError(f"unknown expert name {name!r} (expected base or exp_<k>)")


@dataclass(frozen=True)
class UnitLayout:
    """``(module, index)`` of every unit of one expert, as offsets into the pooled vector."""

    intermediate_size: int
    hidden_size: int

    @property
    def sizes(self) -> dict[str, int]:
        return {"gate": self.intermediate_size, "up": self.intermediate_size, "down": self.hidden_size}

    @property
    def total(self) -> int:
        return 2 * self.intermediate_size + self.hidden_size

    def offsets(self) -> dict[str, tuple[int, int]]:
        out, start = {}, 0
        for m in EXPERT_MODULES:
            out[m] = (start, start + self.sizes[m])
            start += self.sizes[m]
        return out

    def unit(self, flat: int) -> tuple[str, int]:
        for m, (a, b) in self.offsets().items():
            if a <= flat < b:
                return m, flat - a
        raise IndexError(f"unit {flat} out of range (total {self.total})")

    def module_ids(self) -> np.ndarray:
        return np.concatenate([np.full(self.sizes[m], i, dtype=np.int8) for i, m in enumerate(EXPERT_MODULES)])


def expert_units(intermediate_size: int, hidden_size: int) -> UnitLayout:
    return UnitLayout(int(intermediate_size), int(hidden_size))


# --------------------------------------------------------------------------------------------- pooling
def pool_routed(acts: Mapping[str, Any], attention_mask: Any, seq_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5 for one expert and one batch.

    ``acts``: ``{"token_index": [n] (flat b*T+t), "gate": [n, I], "up": [n, I], "down": [n, H]}`` as
    captured by ``neuronmoe.moe.capture_routing(activations=True)``; ``attention_mask``: ``[B, T]``.
    Padding positions are dropped even if the capture contains them. Returns ``means [B, U]`` (float32,
    NaN for sentences with no routed token) and ``counts [B]`` (routed non-padding tokens per sentence).
    """
    import torch

    mask = torch.as_tensor(attention_mask)
    B, T = mask.shape
    if seq_len is not None and seq_len != T:
        raise ValueError(f"seq_len {seq_len} != attention_mask width {T}")
    idx = torch.as_tensor(acts["token_index"]).long().reshape(-1).cpu()
    parts = [torch.as_tensor(acts[m]).detach().float().cpu() for m in EXPERT_MODULES]
    n = idx.numel()
    for m, p in zip(EXPERT_MODULES, parts):
        if p.shape[0] != n:
            raise ValueError(f"capture: {m} has {p.shape[0]} rows but token_index has {n}")
    units = sum(p.shape[1] for p in parts)
    if n and (int(idx.min()) < 0 or int(idx.max()) >= B * T):
        raise ValueError(f"capture: token_index out of range for a [{B}, {T}] batch")
    keep = mask.reshape(-1).cpu().bool()[idx] if n else torch.zeros(0, dtype=torch.bool)
    idx = idx[keep]
    rows = idx // T
    x = torch.cat([p[keep] for p in parts], dim=1) if n else torch.zeros(0, units)
    sums = torch.zeros(B, units, dtype=torch.float64).index_add_(0, rows, x.double())
    counts = torch.bincount(rows, minlength=B)
    means = (sums / counts.clamp(min=1).unsqueeze(1).double()).float().numpy()
    counts = counts.numpy().astype(np.int64)
    means[counts == 0] = np.nan
    return means, counts


def pool_dense(gate: Any, up: Any, down: Any, attention_mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5 for a single-expert (dense) layer: every non-padding token goes to the base MLP."""
    import torch

    mask = torch.as_tensor(attention_mask)
    B, T = mask.shape
    flat = torch.arange(B * T)
    acts = {"token_index": flat}
    for m, t in zip(EXPERT_MODULES, (gate, up, down)):
        t = torch.as_tensor(t)
        acts[m] = t.reshape(B * T, t.shape[-1])
    return pool_routed(acts, mask)


# -------------------------------------------------------------------------------------------------- AP
def _default_ap() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    try:
        from neuronmoe.neuron_analysis import average_precision
    except ImportError:  # the package before its __init__ exports it
        from neuronmoe.neuron_analysis.ap import average_precision
    return average_precision


def expert_ap(
    pooled: np.ndarray,
    counts: np.ndarray,
    labels: np.ndarray,
    num_langs: int,
    policy: str = "exclude",
    ap_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Eq. 6: AP of every unit of one expert for every language, ``float32 [U, num_langs]``.

    ``pooled [N, U]`` (NaN rows = no routed token), ``counts [N]``, ``labels [N]`` integer language
    ids in ``0..num_langs-1``. ``ap_fn(scores [N, U], labels [N]) -> [U, num_langs]`` defaults to
    ``neuronmoe.neuron_analysis.average_precision`` (one-vs-rest, higher activation = more specific).
    Returns the AP matrix and facts about the ranking: per-language sentences, covered sentences, coverage.
    """
    if policy not in NO_TOKEN_POLICIES:
        raise ConfigError(f"no-token policy {policy!r}: choose from {', '.join(NO_TOKEN_POLICIES)}")
    pooled = np.asarray(pooled, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.asarray(counts)
    if pooled.ndim != 2 or pooled.shape[0] != labels.shape[0] or counts.shape[0] != labels.shape[0]:
        raise ValueError(f"shapes: pooled {pooled.shape}, counts {counts.shape}, labels {labels.shape}")
    covered = counts > 0
    n_lang = np.bincount(labels, minlength=num_langs)
    n_cov = np.bincount(labels[covered], minlength=num_langs)
    info = {
        "sentences": n_lang.tolist(),
        "covered": n_cov.tolist(),
        "coverage": [float(c / n) if n else float("nan") for c, n in zip(n_cov, n_lang)],
        "tokens": int(counts.sum()),
        "policy": policy,
    }
    scores, labs = _ranked(pooled, labels, covered, policy)
    ap, valid = _ap_per_language(scores, labs, num_langs, ap_fn or _default_ap())
    info["ap_defined"] = valid.tolist()
    return ap, info


def _ranked(pooled: np.ndarray, labels: np.ndarray, covered: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """The sentences ranked and their scores under the no-token ``policy`` (see the module doc)."""
    if policy == "exclude":
        return pooled[covered], labels[covered]
    scores = pooled.copy()
    if policy == "zero":
        scores[~covered] = 0.0
    elif covered.any():  # bottom: strictly below every covered value of that unit
        scores[~covered] = np.nanmin(scores[covered], axis=0) - 1.0
    else:
        scores[~covered] = np.zeros(pooled.shape[1], dtype=np.float32)
    return scores, labels


def _ap_per_language(scores: np.ndarray, labs: np.ndarray, num_langs: int,
                     ap_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(AP [U, num_langs], defined [num_langs])``: NaN for a language without a positive and a negative."""
    U = scores.shape[1]
    ap = np.full((U, num_langs), np.nan, dtype=np.float32)
    n_pos = np.bincount(labs, minlength=num_langs)
    valid = (n_pos > 0) & (n_pos < labs.shape[0])  # needs a positive and a negative
    if valid.any():
        # languages with no sentence left are dropped from the ranking's label set (AP undefined there)
        present = np.flatnonzero(n_pos > 0)
        remap = np.full(num_langs, -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        got = np.asarray(ap_fn(np.ascontiguousarray(scores), remap[labs]), dtype=np.float32)
        if got.shape != (U, present.size):
            raise ValueError(f"average_precision returned {got.shape}, expected {(U, present.size)}")
        for j, lang in enumerate(present):
            if valid[lang]:
                ap[:, lang] = got[:, j]
    return ap, valid


# ----------------------------------------------------------------------------------------- summaries
@dataclass
class ExpertResult:
    layer: int
    expert: int
    ap: np.ndarray  # [U, L]
    info: dict[str, Any] = field(default_factory=dict)
    dense: bool = False  # a single-expert layer (the dense MLP = base)

    @property
    def name(self) -> str:
        return expert_name(self.expert)


def high_ap_counts(ap: np.ndarray, threshold: float, layout: UnitLayout) -> dict[str, Any]:
    """High-AP units (AP >= threshold; NaN never counts) per language, in all and per module."""
    hi = np.nan_to_num(ap, nan=-1.0) >= threshold  # [U, L]
    per_module = {}
    for m, (a, b) in layout.offsets().items():
        per_module[m] = hi[a:b].sum(axis=0).astype(int).tolist()
    return {"total": hi.sum(axis=0).astype(int).tolist(), "per_module": per_module}


def summarize(
    results: Sequence[ExpertResult],
    languages: Sequence[str],
    layout: UnitLayout,
    threshold: float = DEFAULT_THRESHOLD,
    min_coverage: float = 0.5,
) -> list[dict[str, Any]]:
    """One record per (layer, expert), sorted by layer then expert, all languages."""
    out = []
    for r in sorted(results, key=lambda r: (r.layer, r.expert)):
        counts = high_ap_counts(r.ap, threshold, layout)
        cov = r.info.get("coverage", [])
        low = [lang for lang, c in zip(languages, cov) if not (isinstance(c, float) and math.isnan(c)) and c < min_coverage]
        out.append(
            {
                "layer": r.layer,
                "expert": r.name,
                "expert_index": r.expert,
                "dense": r.dense,
                "total": layout.total,
                "high_ap": dict(zip(languages, counts["total"])),
                "ratio_pct": {lang: 100.0 * c / layout.total for lang, c in zip(languages, counts["total"])},
                "high_ap_per_module": {m: dict(zip(languages, v)) for m, v in counts["per_module"].items()},
                "mean_ap": {lang: _nanmean(r.ap[:, i]) for i, lang in enumerate(languages)},
                "sentences": dict(zip(languages, r.info.get("sentences", []))),
                "covered": dict(zip(languages, r.info.get("covered", []))),
                "coverage": dict(zip(languages, cov)),
                "tokens": r.info.get("tokens"),
                "low_coverage": low,
            }
        )
    return out


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


TABLE_COLUMNS = ("L", "Expert", "Total", "High-AP", "Ratio (%)")


def table_rows(summary: Sequence[Mapping[str, Any]], target: str, multi_expert_only: bool = False) -> list[dict[str, Any]]:
    """Rows in the paper's Table 4/10 layout for ``target``, plus coverage columns."""
    per_layer: dict[int, int] = {}
    for s in summary:
        per_layer[s["layer"]] = per_layer.get(s["layer"], 0) + 1
    rows = []
    for s in summary:
        if multi_expert_only and per_layer[s["layer"]] < 2:
            continue
        if target not in s["high_ap"]:
            raise ConfigError(f"target language {target!r} was not analysed (languages: {', '.join(s['high_ap'])})")
        row = {
            "L": s["layer"],
            "Expert": s["expert"],
            "Total": s["total"],
            "High-AP": s["high_ap"][target],
            "Ratio (%)": round(s["ratio_pct"][target], 2),
        }
        for lang, c in s["coverage"].items():
            row[f"coverage_{lang}"] = None if c is None or (isinstance(c, float) and math.isnan(c)) else round(c, 4)
        row["tokens"] = s["tokens"]
        rows.append(row)
    return rows


def to_markdown(rows: Sequence[Mapping[str, Any]], target: str, threshold: float) -> str:
    lines = [
        f"High-AP units (AP >= {threshold:g}) for `{target}` per layer and expert "
        f"(paper Tables 4 and 10 layout; Total = units per expert: gate + up + down).",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "| " + " | ".join("---:" if c != "Expert" else "---" for c in TABLE_COLUMNS) + " |",
    ]
    for r in rows:
        lines.append(f"| {r['L']} | {r['Expert']} | {r['Total']:,} | {r['High-AP']:,} | {r['Ratio (%)']:.2f} |")
    return "\n".join(lines) + "\n"


def heatmap_matrix(summary: Sequence[Mapping[str, Any]], target: str) -> tuple[np.ndarray, list[int], list[str]]:
    """``ratio [layers, experts]`` (NaN where a layer has no such expert), layer ids, expert names."""
    layers = sorted({s["layer"] for s in summary})
    n_exp = max((s["expert_index"] for s in summary), default=0) + 1
    mat = np.full((len(layers), n_exp), np.nan)
    pos = {lay: i for i, lay in enumerate(layers)}
    for s in summary:
        mat[pos[s["layer"]], s["expert_index"]] = s["ratio_pct"][target]
    return mat, layers, [expert_name(e) for e in range(n_exp)]
