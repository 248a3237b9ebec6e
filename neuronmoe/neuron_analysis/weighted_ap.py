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
        t = torch.from_numpy(np.ascontiguousarray(w.T)).to(device)  # [N, R]
        self.reps = int(t.shape[1])
        self.t64 = t.to(torch.float64)
        # prefix sums of small integers run in int16 (exact while a replicate has fewer than 2**15 rows): half the
        # memory traffic of fp32, which is what they cost
        small = bool(w.sum(axis=1).max(initial=0) < (1 << 15) - 1)
        self.table = t.to(torch.int16) if small else t
        self.total = t.sum(0)  # [R], exact (integers below 2**24)
        self.pos = torch.stack([t[lab == x].sum(0) for x in targets])  # [T, R]
        self.n_of = [int((lab == x).sum()) for x in targets]  # unweighted rows of each target label
        empty = [(x, int(r)) for i, x in enumerate(targets) for r in torch.nonzero(self.pos[i] == 0).flatten()]
        if empty:
            x, r = empty[0]
            raise InputError(f"weights: replicate {r} draws no row of label {x} (AP is undefined without positives)")

    def prefix(self, ids: torch.Tensor) -> torch.Tensor:
        """[C*M + 1, R]: for each row of ``ids`` [C, M] (stored rows in some order) the running sums of their
        weights along it, rows flattened, and one zero row at the end (what "no row before" reads)."""
        C, M = ids.shape
        buf = torch.empty((C * M + 1, self.reps), dtype=self.table.dtype, device=ids.device)
        torch.index_select(self.table, 0, ids.reshape(-1), out=buf[:-1])
        buf[-1].zero_()
        buf[:-1].view(C, M, self.reps).cumsum_(1)
        return buf

    @staticmethod
    def before(buf: torch.Tensor, width: int, at: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
        """[C, K, R] fp32: from :meth:`prefix` of rows ``width`` long, the sum of the weights *before* position
        ``at`` [C, K] in each row (row ``which[c]`` of the prefix for ``at[c]``; default row c)."""
        C, K = at.shape
        which = torch.arange(C, device=at.device) if which is None else which
        idx = torch.where(at > 0, which.unsqueeze(1) * width + at - 1, torch.full_like(at, buf.shape[0] - 1))
        return buf.index_select(0, idx.reshape(-1)).view(C, K, -1).to(torch.float32)


def unit_rows(block: Any, device: torch.device, first: int = 0) -> torch.Tensor:
    """[N, C] scores (numpy, memmap or tensor) -> [C, N] fp32 on ``device`` (exact for fp16), checked finite."""
    if isinstance(block, torch.Tensor):
        finite = torch.isfinite(block).all(dim=0).cpu().numpy()
        t = block
    else:
        arr = np.array(block, order="C")
        finite = np.isfinite(arr).all(axis=0)
        t = torch.from_numpy(arr)
    if not finite.all():
        raise InputError(f"scores: unit {int(np.flatnonzero(~finite)[0]) + first} has a NaN or infinite score")
    return t.to(device).t().to(torch.float32).contiguous()


def _group_starts(vals: torch.Tensor) -> torch.Tensor:
    """[C, N] ascending values -> the position where each position's tie group starts."""
    start = torch.ones_like(vals, dtype=torch.bool)
    torch.ne(vals[:, 1:], vals[:, :-1], out=start[:, 1:])
    pos = torch.arange(vals.shape[1], device=vals.device)
    return torch.cummax(torch.where(start, pos, torch.zeros((), dtype=pos.dtype, device=vals.device)), dim=1).values


class SortedUnits:
    """A block of units sorted once: each unit's ascending order, tie groups and, per label, where its rows
    fall. :meth:`average_precision` then gives the AP under any weights for any subset of the block's units."""

    def __init__(self, x: torch.Tensor, lab: torch.Tensor):
        vals, self.order = torch.sort(x, dim=1)  # ascending: a group's descending end is its ascending start
        self.starts = _group_starts(vals)
        self.lab = lab
        self._rank: torch.Tensor | None = None
        self._where: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _label(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(label t's rows in ascending order, their groups' starts, label-t rows below each start) per unit."""
        if t not in self._where:
            if self._rank is None:  # the position of every stored row in each unit's order
                C, N = self.order.shape
                pos_all = torch.arange(N, device=self.order.device).expand(C, N)
                self._rank = torch.empty_like(self.order).scatter_(1, self.order, pos_all)
            rows = torch.nonzero(self.lab == t).flatten()
            pos = torch.sort(self._rank.index_select(1, rows), dim=1).values
            st = self.starts.gather(1, pos)
            self._where[t] = (self.order.gather(1, pos), st, torch.searchsorted(pos, st))
        return self._where[t]

    def average_precision(self, ws: Weights, targets: Sequence[int], rows: torch.Tensor | None = None,
                          wanted: torch.Tensor | None = None) -> torch.Tensor:
        """[c, R, T] fp64 AP of the units ``rows`` of the block (default all) under the replicates ``ws``;
        ``wanted`` [c, T] bool: compute only those (unit, label) pairs, the others are -1."""
        order = self.order if rows is None else self.order[rows]
        C, N = order.shape
        out = torch.full((C, ws.reps, len(targets)), -1.0, dtype=torch.float64, device=order.device)
        if C == 0:
            return out
        every = ws.prefix(order)  # running weight along each unit's ascending order
        for i, t in enumerate(targets):
            which = torch.arange(C, device=order.device) if wanted is None else torch.nonzero(wanted[:, i]).flatten()
            if len(which):
                sel = which if rows is None else rows[which]
                out[which, :, i] = self._ap(ws, i, t, every, N, which, sel)
        return out

    def _ap(self, ws: Weights, i: int, t: int, every: torch.Tensor, N: int, which: torch.Tensor,
            sel: torch.Tensor) -> torch.Tensor:
        """[c, R] AP of label ``t`` (``ws`` target ``i``) for the block's units ``sel`` (rows ``which`` of ``every``)."""
        ids, st, n_below = (a[sel] for a in self._label(t))
        C, n_t = ids.shape
        before_all = Weights.before(every, N, st, which)  # weight ranked below each label-t row's group
        before_t = Weights.before(ws.prefix(ids), n_t, n_below)  # label-t weight ranked below it
        tp = ws.pos[i].to(torch.float32) - before_t  # label-t weight at or above the group's end
        den = (ws.total - before_all).clamp_(min=1)  # (a zero-weight group at the top: tp is 0 too)
        q = tp.div_(den).to(torch.float64)
        w64 = ws.t64.index_select(0, ids.reshape(-1)).view(C, n_t, -1)
        return q.mul_(w64).sum(1).div_(ws.pos[i].to(torch.float64))


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
    out = np.empty((ws.reps, u, len(targets)), dtype=np.float64)
    step = min(max(u, 1), _chunk_units(n, ws.reps, len(targets), max_chunk_bytes))
    it = range(0, u, step)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="weighted average precision", unit="chunk", total=(u + step - 1) // step)
    for start in it:
        stop = min(u, start + step)
        x = unit_rows(scores[:, start:stop], dev, first=start)
        out[:, start:stop, :] = SortedUnits(x, lab).average_precision(ws, targets).permute(1, 0, 2).cpu().numpy()
    return out
