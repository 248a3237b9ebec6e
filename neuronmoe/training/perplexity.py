"""Held-out perplexity: documents (each + EOS) packed into blocks, token-level mean NLL.

``perplexity(model, tokenizer, texts)`` works for a dense model, a NeuronMoE ``PeftModel`` or
anything returning ``logits``. The first ``max_tokens`` tokens of the stream are scored, in
blocks of ``block_len`` (the last block may be shorter); every token but the first of a block
is predicted, so ``tokens`` = scored predictions.
"""
from __future__ import annotations

import math
from typing import Any, Sequence


def token_blocks(texts: Sequence[str], tokenizer: Any, block_len: int, max_tokens: int | None = None) -> list[list[int]]:
    if block_len < 2:
        raise ValueError(f"block_len must be >= 2, got {block_len}")
    stream: list[int] = []
    eos = tokenizer.eos_token_id
    for t in texts:
        stream.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        if max_tokens is not None and len(stream) >= max_tokens:
            break
    if max_tokens is not None:
        stream = stream[:max_tokens]
    blocks = [stream[i: i + block_len] for i in range(0, len(stream), block_len)]
    return [b for b in blocks if len(b) >= 2]


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    block_len: int = 512,
    max_tokens: int | None = None,
    batch_size: int = 8,
    autocast_bf16: bool = False,
) -> dict[str, float]:
    """``{"perplexity", "nll", "tokens"}`` of ``texts`` under ``model`` (no gradients)."""
    import torch
    import torch.nn.functional as F

    blocks = token_blocks(texts, tokenizer, block_len, max_tokens)
    if not blocks:
        raise ValueError("perplexity: no held-out text (need at least 2 tokens)")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, total_n = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        with torch.no_grad():
            for i in range(0, len(blocks), batch_size):
                chunk = blocks[i: i + batch_size]
                T = max(len(b) for b in chunk)
                ids = torch.full((len(chunk), T), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), T), dtype=torch.long)
                for j, b in enumerate(chunk):
                    ids[j, : len(b)] = torch.tensor(b)
                    mask[j, : len(b)] = 1
                ids, mask = ids.to(device), mask.to(device)
                ctx = torch.autocast(device.type, dtype=torch.bfloat16) if autocast_bf16 else _null()
                with ctx:
                    logits = model(input_ids=ids, attention_mask=mask).logits
                logits = logits[:, :-1].float()
                target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                      ignore_index=-100, reduction="sum")
                total_nll += float(nll)
                total_n += int((target != -100).sum())
    finally:
        model.train(was_training)
    mean = total_nll / max(total_n, 1)
    return {"perplexity": math.exp(min(mean, 700.0)), "nll": mean, "tokens": total_n}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
