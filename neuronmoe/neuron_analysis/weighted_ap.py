"""Average precision under integer sample weights: the AP of a resample without materialising it.

A bootstrap replicate (rows drawn with replacement) or a subsample (rows drawn without replacement) is a
vector of integer weights ``w`` over the stored rows: row ``i`` appears ``w_i`` times. Repeated rows are tied
with each other, so the step-wise AP of the materialised resample (sklearn's ``average_precision_score``, ties
included, exactly as :func:`neuronmoe.neuron_analysis.ap.average_precision`) only needs weighted counts::

    AP_t = 1/P_t * sum over rows i of label t of  w_i * TP_t(g_i) / N(g_i)

where ``g_i`` is the tie group of row ``i`` in a unit's descending order, ``TP_t(g)`` the weight of label-``t``
rows ranked at or above the end of ``g``, ``N(g)`` the weight of all rows ranked there and ``P_t`` the
weight of label ``t``. The unit's sort and its tie groups do not depend on the weights, so one sort serves
every replicate: per replicate only prefix sums of the weights along that order are needed.

The result is bit for bit the AP of the materialised resample: the numerators and denominators are
integers (exact in fp32 below 2**24), each quotient is rounded once in fp32 like
:func:`~neuronmoe.neuron_analysis.ap.average_precision` does, and the fp64 sum of those quotients times
small integers is exact (every term is a multiple of the smallest quotient's ulp and the sum stays far below
2**53 of them), so the order of summation does not matter.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from neuronmoe.errors import InputError

#: fp32 counts are exact below this
_EXACT = 1 << 24


def check_weights(weights: Any, n: int) -> np.ndarray:
    """``weights`` as a float32 [R, N] array of non-negative integers (a row: one replicate)."""
    w = np.asarray(weights)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != n:
        raise InputError(f"weights: expected shape [replicates, {n}], got {tuple(np.shape(weights))}")
    wf = w.astype(np.float64)
    if not np.isfinite(wf).all() or (wf < 0).any() or (wf != np.round(wf)).any():
        raise InputError("weights: every weight must be a non-negative integer (how often a row is drawn)")
    if w.shape[0] and wf.sum(axis=1).max() >= _EXACT:
        raise InputError(f"weights: a replicate of {int(wf.sum(axis=1).max())} rows is too large (at most {_EXACT - 1})")
    return wf.astype(np.float32)


def _chunk_units(n: int, reps: int, n_target: int, max_chunk_bytes: int) -> int:
    per_unit = n * (reps * 8 + 64) + n_target * reps * 48
    return max(1, int(max_chunk_bytes // max(per_unit, 1)))


class Weights:
    """The replicates' weights on the compute device, with their per-label and total sums."""

    def __init__(self, w: Any, lab: torch.Tensor, targets: Sequence[int], device: torch.device):
        w = check_weights(w, int(lab.shape[0]))
        self.t = torch.from_numpy(np.ascontiguousarray(w.T)).to(device)  # [N, R]
        self.t64 = self.t.to(torch.float64)
        # prefix sums of small integers run in int16 (exact while a replicate has fewer than 2**15 rows), gathered
        # from uint8 weights: a third of the memory traffic of fp32
        small = bool(w.max(initial=0) < 256 and w.sum(axis=1).max(initial=0) < (1 << 15) - 1)
        self.t8 = self.t.to(torch.uint8) if small else None
        self.total = self.t.sum(0)  # [R], exact (integers below 2**24)
        self.pos = torch.stack([self.t[lab == t].sum(0) for t in targets])  # [T, R]
        self.n_of = [int((lab == t).sum()) for t in targets]  # unweighted rows of each target label
        empty = [(t, int(r)) for i, t in enumerate(targets) for r in torch.nonzero(self.pos[i] == 0).flatten()]
        if empty:
            t, r = empty[0]
            raise InputError(f"weights: replicate {r} draws no row of label {t} (AP is undefined without positives)")

    def prefix(self, order: torch.Tensor) -> torch.Tensor:
        """[C, N+1, R]: per unit (row of ``order``, ascending positions) the weight of the rows before each position."""
        C, N = order.shape
        if self.t8 is None:
            return _exclusive_cumsum(self.t.index_select(0, order.reshape(-1)).view(C, N, -1))
        return _exclusive_cumsum(self.t8.index_select(0, order.reshape(-1)).view(C, N, -1).to(torch.int16))


def unit_rows(block: Any, device: torch.device, first: int = 0) -> torch.Tensor:
    """[N, C] scores (numpy, memmap or tensor) -> [C, N] fp32 on ``device`` (exact for fp16), checked finite."""
    t = block if isinstance(block, torch.Tensor) else torch.from_numpy(np.array(block, order="C"))
    x = t.to(device).t().to(torch.float32).contiguous()
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0]) + first
        raise InputError(f"scores: unit {bad} has a NaN or infinite score")
    return x


def _group_starts(vals: torch.Tensor) -> torch.Tensor:
    """[C, N] ascending values -> the position where each position's tie group starts."""
    start = torch.ones_like(vals, dtype=torch.bool)
    torch.ne(vals[:, 1:], vals[:, :-1], out=start[:, 1:])
    pos = torch.arange(vals.shape[1], device=vals.device)
    return torch.cummax(torch.where(start, pos, torch.zeros((), dtype=pos.dtype, device=vals.device)), dim=1).values


def _exclusive_cumsum(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Prefix sums along ``dim`` with a leading zero: ``out[:, j]`` = sum of ``x[:, :j]``."""
    shape = list(x.shape)
    shape[dim] += 1
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    out.narrow(dim, 0, 1).zero_()
    torch.cumsum(x, dim=dim, out=out.narrow(dim, 1, x.shape[dim]))
    return out


class SortedUnits:
    """A block of units sorted once: each unit's ascending order, tie groups and, per label, where its rows
    fall. :meth:`average_precision` then gives the AP under any weights for any subset of the block's units."""

    def __init__(self, x: torch.Tensor, lab: torch.Tensor):
        vals, self.order = torch.sort(x, dim=1)  # ascending: a group's descending end is its ascending start
        self.starts = _group_starts(vals)
        self.lab_s = lab[self.order]
        self._where: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _label(self, t: int, n_t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(label t's rows in ascending order, their groups' starts, label-t rows below each start) per unit."""
        if t not in self._where:
            m = self.lab_s == t
            pos = torch.nonzero(m)[:, 1].view(m.shape[0], n_t)
            st = self.starts.gather(1, pos)
            self._where[t] = (self.order.gather(1, pos), st, _exclusive_cumsum(m.to(torch.int64)).gather(1, st))
        return self._where[t]

    def average_precision(self, ws: Weights, targets: Sequence[int], rows: torch.Tensor | None = None) -> torch.Tensor:
        """[c, R, T] fp64 AP of the units ``rows`` of the block (default all) under the replicates ``ws``."""
        order = self.order if rows is None else self.order[rows]
        C, N = order.shape
        R = ws.t.shape[1]
        out = torch.empty((C, R, len(targets)), dtype=torch.float64, device=order.device)
        if C == 0:
            return out
        wcum = ws.prefix(order)  # [C, N+1, R]
        for i, t in enumerate(targets):
            ids, st, n_before = (a if rows is None else a[rows] for a in self._label(t, ws.n_of[i]))
            n_t = ids.shape[1]
            w_t = ws.t.index_select(0, ids.reshape(-1)).view(C, n_t, R)
            w64 = ws.t64.index_select(0, ids.reshape(-1)).view(C, n_t, R)
            before_all = wcum.gather(1, st.unsqueeze(2).expand(C, n_t, R)).to(torch.float32)  # weight ranked below the group
            before_t = _exclusive_cumsum(w_t).gather(1, n_before.unsqueeze(2).expand(C, n_t, R))
            tp = ws.pos[i] - before_t  # label-t weight at or above the group's end
            den = (ws.total - before_all).clamp_(min=1)  # (a zero-weight group at the top: tp is 0 too)
            q = tp.div_(den).to(torch.float64)
            out[:, :, i] = q.mul_(w64).sum(1).div_(ws.pos[i].to(torch.float64))
        return out


def weighted_average_precision(
    scores: Any,
    labels: Any,
    weights: Any,
    targets: Sequence[int],
    *,
    device: str | torch.device | None = None,
    max_chunk_bytes: int = 256 << 20,
    progress: bool = False,
) -> np.ndarray:
    """AP of every column (unit) of ``scores`` [N, U] for each label in ``targets`` (one-vs-rest), under each
    row of ``weights`` [R, N] (non-negative integers: how often each row is drawn). Returns float64
    [R, U, len(targets)], equal to ``average_precision_score(labels_m == t, scores_m[:, u])`` on the resample
    that repeats row ``i`` ``weights[r, i]`` times (ties included). ``scores`` may be a numpy array or memmap
    (read chunk by chunk) or a tensor; ``device``: where to compute (default CPU, or the tensor's device)."""
    if scores.ndim != 2:
        raise InputError(f"scores: expected a 2-D array [samples, units], got shape {tuple(scores.shape)}")
    n, u = int(scores.shape[0]), int(scores.shape[1])
    is_torch = isinstance(scores, torch.Tensor)
    dev = torch.device(device) if device is not None else (scores.device if is_torch else torch.device("cpu"))
    lab = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels), dtype=torch.int64)
    if lab.shape != (n,):
        raise InputError(f"labels: expected shape [{n}] (one label per sample), got {tuple(lab.shape)}")
    lab = lab.to(dev)
    ws = Weights(weights, lab, list(targets), dev)
    out = np.empty((ws.t.shape[1], u, len(targets)), dtype=np.float64)
    step = min(max(u, 1), _chunk_units(n, ws.t.shape[1], len(targets), max_chunk_bytes))
    it = range(0, u, step)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="weighted average precision", unit="chunk", total=(u + step - 1) // step)
    for start in it:
        stop = min(u, start + step)
        x = unit_rows(scores[:, start:stop], dev, first=start)
        out[:, start:stop, :] = SortedUnits(x, lab).average_precision(ws, targets).permute(1, 0, 2).cpu().numpy()
    return out
