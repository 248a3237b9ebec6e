"""Multiple-choice log-likelihoods with the shared context computed once.

lm-eval scores each answer option as its own sequence ``context + option``, so a 4-way item runs its context
through the model four times (and the LM head and a log-softmax over every context position). Here the requests
that share one context token list are scored together: the context minus its last token runs once (keeping its
key/value cache and computing no logits), then every option's ``last context token + option[:-1]`` runs on that
cache, right-padded. Several questions share a batch: when their contexts have one length, with no mask at all
(every cache slot at its position); otherwise the contexts are left-padded, with an attention mask that hides the
padding and position ids that start at each context's first real token, as batched generation does (sliding-window
layers included), and the options continue each context at its own length. The batches take the questions in
order of context length, so neighbours pad little (left padding at most :data:`MAX_PAD` times the batch's real
context positions).
The scores are those of lm-eval's own path (the same tokens at the same positions; equal to float rounding,
``tests/evaluation/test_shared_context.py`` checks it against lm-eval on a tiny model).

The other requests (held-out documents' rolling windows, unshared contexts) are scored by :func:`score_plain`:
lm-eval's arithmetic (the same truncation from the left, the same positions, the same log-softmax), with the
LM head run only on the positions that are scored and batches bounded in tokens (:data:`LOGIT_TOKENS`) besides
``batch_size`` rows, so that 8 documents of 1,500 tokens no longer hold two ``[8, 1500, 49152]`` float tensors
(4.7 GB) at once.
"""
from __future__ import annotations

from typing import Any, Sequence

Request = tuple[Any, list[int], list[int]]
#: at most this many (row x scored position) logit vectors per forward: 4,096 x a 49k vocabulary = 0.8 GB in fp32
LOGIT_TOKENS = 4096  # ((context, continuation) or None, context tokens, continuation tokens)
#: a batch of questions grows while its left padding stays within this share of its real context positions
MAX_PAD = 0.25


def shared_groups(requests: Sequence[Request], max_length: int) -> list[list[int]]:
    """Indices of the requests that share a context (two or more, context of >= 2 tokens, context + continuation within
    ``max_length + 1`` tokens, so lm-eval would not cut it from the left); in order of first appearance."""
    by_ctx: dict[tuple[int, ...], list[int]] = {}
    for i, (_, ctx, cont) in enumerate(requests):
        if len(ctx) >= 2 and 0 < len(cont) and len(ctx) + len(cont) <= max_length + 1:
            by_ctx.setdefault(tuple(ctx), []).append(i)
    return [idx for idx in by_ctx.values() if len(idx) > 1]


def _pad(rows: list[list[int]], pad_id: int, device: Any) -> Any:
    """``rows`` right-padded with ``pad_id`` into one ``[len(rows), widest]`` long tensor."""
    import torch

    out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=device)
    return out


def _left_pad(rows: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    """``rows`` left-padded: (input ids, attention mask, position ids counting from each row's first real token)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long, device=device)
        mask[i, width - len(r):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def score_groups(model: Any, groups: list[tuple[list[int], list[list[int]]]], device: Any, softmax_dtype: Any = None,
                 pad_id: int = 0) -> list[list[tuple[float, bool]]]:
    """(log P(continuation | context), greedy?) for each continuation of each ``(context, continuations)`` group.

    One forward of the contexts minus their last token (keeping the key/value cache, no logits), then one forward
    of every group's ``last context token + continuation[:-1]`` rows on that cache, right-padded (a padded position
    comes after the real ones, so no real position sees it). Contexts of one length keep every row's cache slots at
    its positions, so no mask or position ids are needed; contexts of several lengths are left-padded, masked, and
    given position ids from their first real token in both forwards (sliding-window layers included)."""
    import torch

    rep = torch.tensor([g for g, (_, conts) in enumerate(groups) for _ in conts], device=device)
    tails = [[ctx[-1], *c[:-1]] for ctx, conts in groups for c in conts]
    heads = [ctx[:-1] for ctx, _ in groups]
    with torch.no_grad():
        if len({len(h) for h in heads}) == 1:
            first: dict[str, Any] = {"input_ids": _pad(heads, pad_id, device)}
            second: dict[str, Any] = {}
        else:
            ids, mask, pos = _left_pad(heads, pad_id, device)
            first = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
            tail_w = max(len(t) for t in tails)
            start = torch.tensor([len(h) for h in heads], device=device)[rep]
            second = {"attention_mask": torch.cat([mask[rep], torch.ones((len(tails), tail_w), dtype=mask.dtype,
                                                                           device=device)], dim=1),
                      "position_ids": start[:, None] + torch.arange(tail_w, device=device)[None, :]}
        out = model(**first, use_cache=True, logits_to_keep=1)
        key = "cache" if getattr(out, "cache", None) is not None else "past_key_values"  # transformers >= 5.2x: cache
        cache = getattr(out, key)
        cache.batch_select_indices(rep)  # each group's cache once per continuation
        logits = model(input_ids=_pad(tails, pad_id, device), use_cache=True, **second, **{key: cache}).logits
    return _option_scores(logits, groups, softmax_dtype)


def _option_scores(logits: Any, groups: list[tuple[list[int], list[list[int]]]],
                   softmax_dtype: Any) -> list[list[tuple[float, bool]]]:
    """Each continuation's (summed log-probability, greedy?) from its row of ``logits`` (rows in group order)."""
    import torch
    import torch.nn.functional as F

    res: list[list[tuple[float, bool]]] = []
    r = 0
    for _, conts in groups:
        res.append([])
        for c in conts:
            lp = F.log_softmax(logits[r, : len(c)], dim=-1, dtype=softmax_dtype)
            target = torch.tensor(c, dtype=torch.long, device=lp.device)
            res[-1].append((float(lp.gather(-1, target.unsqueeze(-1)).sum()), bool((lp.argmax(dim=-1) == target).all())))
            r += 1
    return res


def _greedy_runs(order: Sequence[int], too_big: Any) -> list[list[int]]:
    """Consecutive runs of ``order``: each grows until adding the next index makes ``too_big(run, run + [next])`` true
    (an index alone always forms a run)."""
    batches: list[list[int]] = []
    cur: list[int] = []
    for x in order:
        cand = cur + [x]
        if cur and too_big(cur, cand):
            batches.append(cur)
            cand = [x]
        cur = cand
    if cur:
        batches.append(cur)
    return batches


def _group_batches(groups: list[list[int]], requests: Sequence[Request], rows: int, logit_tokens: int,
                   max_pad: float | None = None) -> list[list[int]]:
    """Runs of group indices (longest context first) of at most ``rows`` continuation rows and ``logit_tokens``
    scored positions (rows x the widest continuation), whose contexts' left padding stays within ``max_pad`` of
    their real positions (None: :data:`MAX_PAD`); a group alone may exceed them."""
    pad_share = MAX_PAD if max_pad is None else max_pad

    def ctx_len(g: int) -> int:
        return len(requests[groups[g][0]][1])

    def too_big(_cur: list[int], cand: list[int]) -> bool:
        n_rows = sum(len(groups[h]) for h in cand)
        widest = max(len(requests[i][2]) for h in cand for i in groups[h])
        real = sum(ctx_len(h) - 1 for h in cand)
        padding = len(cand) * max(ctx_len(h) - 1 for h in cand) - real
        return padding > pad_share * real or n_rows > rows or n_rows * widest > logit_tokens

    return _greedy_runs(sorted(range(len(groups)), key=lambda g: (-ctx_len(g), g)), too_big)


def _window(ctx: list[int], cont: list[int], max_length: int) -> tuple[list[int], int]:
    """lm-eval's model input for one request (``(ctx + cont)[-(max_length + 1):][:-1]``) and its continuation length."""
    return (ctx + cont)[-(max_length + 1):][:-1], len(cont)


def _plain_batches(wins: list[tuple[list[int], int]], order: list[int], rows: int, logit_tokens: int) -> list[list[int]]:
    """Consecutive runs of ``order`` (longest first) of at most ``rows`` requests whose scored positions (the rows x the
    positions kept, padded to the batch's widest input) stay within ``logit_tokens`` (one request alone may exceed it)."""
    def too_big(_cur: list[int], cand: list[int]) -> bool:
        width = max(len(wins[j][0]) for j in cand)
        keep = max(width - len(wins[j][0]) + wins[j][1] for j in cand)
        return len(cand) > rows or len(cand) * keep > logit_tokens

    return _greedy_runs(order, too_big)


def score_plain(model: Any, requests: Sequence[Request], max_length: int, device: Any, softmax_dtype: Any = None,
                rows: int = 8, logit_tokens: int = LOGIT_TOKENS) -> list[tuple[float, bool]]:
    """(log P(continuation | context), greedy?) per request, one sequence per request (lm-eval's path, memory-bounded)."""
    import torch
    import torch.nn.functional as F

    wins = [_window(ctx, cont, max_length) for _, ctx, cont in requests]
    order = sorted(range(len(wins)), key=lambda i: (-len(wins[i][0]), i))
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    for batch in _plain_batches(wins, order, max(1, int(rows)), logit_tokens):
        width = max(len(wins[i][0]) for i in batch)
        inp = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for r, i in enumerate(batch):
            inp[r, : len(wins[i][0])] = torch.tensor(wins[i][0], dtype=torch.long, device=device)
        keep = max(width - (len(wins[i][0]) - wins[i][1]) for i in batch)
        with torch.no_grad():
            logits = model(input_ids=inp, logits_to_keep=keep).logits  # the last `keep` positions of the padded rows
        for r, i in enumerate(batch):
            n, c = len(wins[i][0]), wins[i][1]
            lp = F.log_softmax(logits[r, keep - (width - n) - c: keep - (width - n)], dim=-1, dtype=softmax_dtype)
            target = torch.tensor(requests[i][2][-c:], dtype=torch.long, device=lp.device)
            out[i] = (float(lp.gather(-1, target.unsqueeze(-1)).sum()), bool((lp.argmax(dim=-1) == target).all()))
        del logits
    return out  # type: ignore[return-value]


def loglikelihood_shared(lm: Any, requests: Sequence[Request], fallback: Any = None) -> list[tuple[float, bool]]:
    """Every request's (log-likelihood, greedy?): shared contexts through :func:`score_groups`, the rest through
    ``fallback(list_of_requests)`` when given (lm-eval's own ``_loglikelihood_tokens``), else :func:`score_plain`."""
    groups = shared_groups(requests, lm.max_length)
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    grouped = {i for g in groups for i in g}
    rest = [i for i in range(len(requests)) if i not in grouped]
    if rest:
        subset = [requests[i] for i in rest]
        scored = fallback(subset) if fallback is not None else score_plain(
            lm.model, subset, lm.max_length, lm.device, lm.softmax_dtype, rows=_rows(lm.batch_size))
        for i, r in zip(rest, scored):
            out[i] = r
            if fallback is None and requests[i][0] is not None:
                lm.cache_hook.add_partial("loglikelihood", requests[i][0], r)
    pad = getattr(lm.tokenizer, "pad_token_id", None) or 0
    rows = 4 * _rows(lm.batch_size)  # continuation rows per forward: batch_size questions of 4 options
    for batch in _group_batches(groups, requests, rows, LOGIT_TOKENS):
        scored = score_groups(lm.model, [(requests[groups[g][0]][1], [requests[i][2] for i in groups[g]]) for g in batch],
                              lm.device, lm.softmax_dtype, pad)
        for g, res in zip(batch, scored):
            for i, r in zip(groups[g], res):
                out[i] = r
                if requests[i][0] is not None:
                    lm.cache_hook.add_partial("loglikelihood", requests[i][0], r)
    return out  # type: ignore[return-value]


def _rows(batch_size: Any) -> int:
    """Rows per batch from lm-eval's ``batch_size`` (an int; ``auto``: 8)."""
    try:
        return max(1, int(batch_size))
    except (TypeError, ValueError):
        return 8
