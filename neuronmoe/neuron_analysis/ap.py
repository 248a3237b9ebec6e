"""Average precision of every unit for every language, vectorised and exact.

``average_precision(scores, labels)`` equals ``sklearn.metrics.average_precision_score(
labels == l, scores[:, u])`` for every unit ``u`` and language ``l``, ties included:
sklearn's step-wise AP puts one threshold at each *distinct* score, so every positive in a
tie group receives the precision measured at the end of that group::

    AP_l = 1/P_l * sum over positives i of  tp_l(end(g_i)) / (end(g_i) + 1)

where, after sorting a unit's scores in descending order, ``g_i`` is the tie group of
sample ``i``, ``end(g)`` its last (0-based) position and ``tp_l(k)`` the number of
language-``l`` samples among the first ``k + 1``. Each unit's scores are sorted once; the
per-language cumulative counts are read at the tie-group ends from that one sort, so
L languages cost one sort plus O(N L) arithmetic per unit. Units are processed in chunks
whose size bounds the working memory (``max_chunk_bytes``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronmoe.errors import InputError

#: working memory per (sample, unit) pair inside one chunk, in bytes: input and sorted values (4 + 4),
#: sort indices (8), labels (8), group starts (8 + 8 cummax indices), gather index (8), weights (4 + 4 + 8),
#: tie mask (1), plus 4 bytes per language for the cumulative counts
_BYTES_PER_CELL_BASE = 4 + 4 + 8 + 8 + 16 + 8 + 16 + 1


def _as_labels(labels: Any, n: int, num_labels: int | None) -> tuple[torch.Tensor, int, bool]:
    lab = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels: expected shape [{n}] (one label per sample), got {tuple(lab.shape)}")
    binary = lab.dtype == torch.bool
    if binary:
        lab = lab.to(torch.int64)
        L = 2
    else:
        if lab.dtype.is_floating_point or lab.dtype.is_complex:
            raise ValueError("labels: expected bool (one language) or integer language ids, got floats")
        lab = lab.to(torch.int64)
        if n and int(lab.min()) < 0:
            raise ValueError("labels: language ids must be >= 0")
        L = int(num_labels) if num_labels is not None else (int(lab.max()) + 1 if n else 0)
        if n and int(lab.max()) >= L:
            raise ValueError(f"labels: id {int(lab.max())} >= num_labels {L}")
    counts = torch.bincount(lab, minlength=L)
    if binary:
        if int(counts[1]) == 0:
            raise InputError("labels: no positive sample (AP is undefined without positives)")
    else:
        empty = [i for i in range(L) if int(counts[i]) == 0]
        if empty:
            raise InputError(f"labels: language id(s) {empty} have no samples (AP is undefined without positives)")
    return lab, L, binary


def _chunk_units(n: int, L: int, max_chunk_bytes: int) -> int:
    per_unit = n * (_BYTES_PER_CELL_BASE + 4 * L)
    return max(1, int(max_chunk_bytes // max(per_unit, 1)))


class _Workspace:
    """Buffers reused by every chunk (no fresh large allocations, hence no page faults per chunk)."""

    def __init__(self, C: int, N: int, L: int, device: torch.device):
        f32, i64 = torch.float32, torch.int64
        self.x = torch.empty((C, N), dtype=f32, device=device)
        self.vals = torch.empty((C, N), dtype=f32, device=device)
        self.order = torch.empty((C, N), dtype=i64, device=device)
        self.lab = torch.empty((C, N), dtype=i64, device=device)
        self.start = torch.empty((C, N), dtype=torch.bool, device=device)
        self.s = torch.empty((C, N), dtype=i64, device=device)
        self.s_idx = torch.empty((C, N), dtype=i64, device=device)
        self.cum = torch.empty((C, N + 1, L), dtype=f32, device=device)
        self.w = torch.empty((C, N), dtype=f32, device=device)
        self.den = torch.empty((C, N), dtype=f32, device=device)
        self.pos = torch.arange(N, dtype=i64, device=device)
        self.zero = torch.zeros((), dtype=i64, device=device)


def _ap_chunk(x: torch.Tensor, lab: torch.Tensor, L: int, pos_counts: torch.Tensor, ws: _Workspace) -> torch.Tensor:
    """x: [C, N] float scores (one row per unit); lab: [N] int64 ids -> [C, L] float64 AP.

    Sorting *ascending* puts the descending order's tie-group ends at the ascending tie-group
    starts ``s``: the positives ranked at or above a descending position are the samples at
    ascending positions >= ``s``, so ``tp_l = P_l - (language-l samples before s)`` and the
    number ranked is ``N - s``. Only forward scans are needed (no flips).
    """
    C, N = x.shape
    vals, order, lab_s = ws.vals[:C], ws.order[:C], ws.lab[:C]
    torch.sort(x, dim=1, out=(vals, order))
    torch.index_select(lab, 0, order.view(-1), out=lab_s.view(-1))
    start = ws.start[:C]
    start[:, 0] = True
    torch.ne(vals[:, 1:], vals[:, :-1], out=start[:, 1:])
    s = ws.s[:C]
    torch.where(start, ws.pos, ws.zero, out=ws.s_idx[:C])
    torch.cummax(ws.s_idx[:C], dim=1, out=(s, ws.order[:C]))  # order is free again: reuse it
    # exclusive cumulative counts per language along the ascending order: cum[:, j, l] = number
    # of language-l samples at positions < j (row 0 is zero)
    cum = ws.cum[:C]
    cum[:, 0].zero_()
    cum[:, 1:].zero_().scatter_(2, lab_s.unsqueeze(2), 1.0)
    torch.cumsum(cum, dim=1, out=cum)  # in place; counts are exact in fp32 below 2**24
    idx = ws.order[:C]
    torch.mul(s, L, out=idx).add_(lab_s)
    before = ws.w[:C]
    torch.gather(cum.view(C, (N + 1) * L), 1, idx, out=before)
    # own-language true positives at the group's threshold, over the number of samples ranked there
    # (integers below 2**24: exact in fp32; the quotient is rounded once, summed in fp64)
    tp = pos_counts[lab_s.view(-1)].view(C, N).sub_(before)
    den = ws.den[:C]
    torch.sub(N, s, out=den)
    w = tp.div_(den).to(torch.float64)
    out = torch.zeros((C, L), dtype=torch.float64, device=x.device)
    out.scatter_add_(1, lab_s, w)
    return out.div_(pos_counts.to(torch.float64).unsqueeze(0))


def average_precision(
    scores: Any,
    labels: Any,
    *,
    num_labels: int | None = None,
    device: str | torch.device | None = None,
    max_chunk_bytes: int = 256 << 20,
    progress: bool = False,
) -> np.ndarray | torch.Tensor:
    """AP of every column (unit) of ``scores`` [N, U] for the given sample labels.

    ``labels``: bool [N] -> returns [U] (AP of the positives); integer ids [N] in
    ``0..L-1`` -> returns [U, L] (one-vs-rest AP per language). Exactly sklearn's
    ``average_precision_score`` (ties included). ``scores`` may be a numpy array (also a
    memmap, read chunk by chunk) or a torch tensor; the result is float64 numpy for numpy
    input, a float64 tensor on the input's device for tensor input. ``device``: where to
    compute (default: the tensor's device, CPU for numpy). ``max_chunk_bytes`` bounds the
    working memory (about ``N * U_chunk * (32 + 4 L)`` bytes).
    """
    is_torch = isinstance(scores, torch.Tensor)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected a 2-D array [samples, units], got shape {tuple(scores.shape)}")
    n, u = int(scores.shape[0]), int(scores.shape[1])
    if n == 0:
        raise ValueError("scores: no samples")
    dev = torch.device(device) if device is not None else (scores.device if is_torch else torch.device("cpu"))
    lab, L, binary = _as_labels(labels, n, num_labels)
    lab = lab.to(dev)
    pos_counts = torch.bincount(lab, minlength=L).to(torch.float32)
    out = torch.empty((u, L), dtype=torch.float64, device=dev)
    step = min(u, _chunk_units(n, L, max_chunk_bytes))
    ws = _Workspace(step, n, L, dev)
    it = range(0, u, step)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="average precision", unit="chunk", total=(u + step - 1) // step)
    for start in it:
        stop = min(u, start + step)
        if is_torch:
            block = scores[:, start:stop].to(dev)
        else:
            part = np.array(scores[:, start:stop], order="C")  # a writable copy (memmaps are read-only)
            if part.dtype not in (np.float16, np.float32, np.float64):
                part = part.astype(np.float64)
            block = torch.from_numpy(part).to(dev)
        # one copy: transpose to [units, samples] and convert to fp32 (exact for fp16 input)
        x = ws.x[: stop - start]
        x.copy_(block.t())
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0]) + start
            raise InputError(f"scores: unit {bad} has a NaN or infinite score")
        out[start:stop] = _ap_chunk(x, lab, L, pos_counts, ws)
    res = out[:, 1] if binary else out
    return res if is_torch else res.cpu().numpy()
