"""Multiple-choice log-likelihoods with the shared context computed once.

lm-eval scores each answer option as its own sequence ``context + option``, so a 4-way item runs its context
through the model four times (and the LM head and a log-softmax over every context position). Here the requests
that share one context token list are scored together: the context minus its last token runs once (keeping its
key/value cache and computing no logits), then every option's ``last context token + option[:-1]`` runs as one
batch on that cache (right-padded: a padded position comes after the real ones, so no real position sees it).
The scores are those of lm-eval's own path (the same tokens at the same positions; equal to float rounding,
``tests/evaluation/test_shared_context.py`` checks it against lm-eval on a tiny model).

Requests whose context is not shared, is a single token, or does not fit the model's window go through lm-eval's
own code unchanged (held-out documents, rolling windows).
"""
from __future__ import annotations

from typing import Any, Sequence

Request = tuple[Any, list[int], list[int]]  # ((context, continuation) or None, context tokens, continuation tokens)


def shared_groups(requests: Sequence[Request], max_length: int) -> list[list[int]]:
    """Indices of the requests that share a context (two or more, context of >= 2 tokens, context + continuation within
    ``max_length + 1`` tokens, so lm-eval would not cut it from the left); in order of first appearance."""
    by_ctx: dict[tuple[int, ...], list[int]] = {}
    for i, (_, ctx, cont) in enumerate(requests):
        if len(ctx) >= 2 and 0 < len(cont) and len(ctx) + len(cont) <= max_length + 1:
            by_ctx.setdefault(tuple(ctx), []).append(i)
    return [idx for idx in by_ctx.values() if len(idx) > 1]


def score_group(model: Any, ctx: list[int], conts: list[list[int]], device: Any, softmax_dtype: Any = None,
                pad_id: int = 0) -> list[tuple[float, bool]]:
    """(log P(continuation | context), greedy?) for each continuation of one shared context."""
    import torch
    import torch.nn.functional as F

    k = len(conts)
    with torch.no_grad():
        prefix = torch.tensor([ctx[:-1]], dtype=torch.long, device=device)
        out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        key = "cache" if getattr(out, "cache", None) is not None else "past_key_values"  # transformers >= 5.2x: cache
        cache = getattr(out, key)
        cache.batch_repeat_interleave(k)
        tails = [[ctx[-1], *c[:-1]] for c in conts]
        width = max(len(t) for t in tails)
        inp = torch.full((k, width), pad_id, dtype=torch.long, device=device)
        for r, t in enumerate(tails):
            inp[r, : len(t)] = torch.tensor(t, dtype=torch.long, device=device)
        logits = model(input_ids=inp, use_cache=True, **{key: cache}).logits
        logp = F.log_softmax(logits, dim=-1, dtype=softmax_dtype)
    res = []
    for r, c in enumerate(conts):
        lp = logp[r, : len(c)]
        target = torch.tensor(c, dtype=torch.long, device=lp.device)
        greedy = bool((lp.argmax(dim=-1) == target).all())
        res.append((float(lp.gather(-1, target.unsqueeze(-1)).sum()), greedy))
    return res


def loglikelihood_shared(lm: Any, requests: Sequence[Request], fallback: Any) -> list[tuple[float, bool]]:
    """Every request's (log-likelihood, greedy?): shared contexts through :func:`score_group`, the rest through
    ``fallback(list_of_requests)`` (lm-eval's own ``_loglikelihood_tokens``)."""
    groups = shared_groups(requests, lm.max_length)
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    grouped = {i for g in groups for i in g}
    rest = [i for i in range(len(requests)) if i not in grouped]
    if rest:
        for i, r in zip(rest, fallback([requests[i] for i in rest])):
            out[i] = r
    pad = getattr(lm.tokenizer, "pad_token_id", None) or 0
    for g in groups:
        ctx = requests[g[0]][1]
        for i, r in zip(g, score_group(lm.model, ctx, [requests[i][2] for i in g], lm.device, lm.softmax_dtype, pad)):
            out[i] = r
            key = requests[i][0]
            if key is not None:
                lm.cache_hook.add_partial("loglikelihood", key, r)
    return out  # type: ignore[return-value]
