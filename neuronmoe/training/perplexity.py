"""Held-out perplexity: every document scored on its own, exactly its own tokens, token-level mean NLL.

``perplexity(model, tokenizer, texts)`` works for a dense model, a NeuronMoE ``PeftModel`` or anything returning
``logits``. The rule is the evaluation's (``neuronmoe.evaluation.runner.scoring_lm_class``): a document is encoded
without the tokenizer's special tokens and conditioned on one start token, the model's BOS (else its EOS, as
lm-eval does), so no BOS or EOS is ever scored as text and no document is conditioned on another. A document
longer than ``block_len`` is scored in windows that overlap by one token (each token predicted once, the window's
first token given). The first ``max_tokens`` scored tokens are used (the last document cut there);
``tokens`` = scored predictions.
"""
from __future__ import annotations

import math
from typing import Any, Sequence


def prefix_token_id(tokenizer: Any) -> int | None:
    """The token every document is conditioned on: BOS where the model has one, else EOS (lm-eval's rule)."""
    for t in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if t is not None:
            return int(t)
    return None


def document_windows(tokens: Sequence[int], prefix: int | None, block_len: int) -> list[list[int]]:
    """``[prefix] + tokens`` cut into windows of at most ``block_len`` tokens that overlap by one: window ``k`` predicts
    its tokens after the first, so every document token is predicted exactly once (the first one only when a
    prefix conditions it)."""
    seq = ([prefix] if prefix is not None else []) + list(tokens)
    return [seq[i: i + block_len] for i in range(0, max(len(seq) - 1, 0), block_len - 1)]


def token_blocks(texts: Sequence[Any], tokenizer: Any, block_len: int, max_tokens: int | None = None) -> list[list[int]]:
    """The windows of every document (:func:`document_windows`), up to ``max_tokens`` scored tokens in all.

    A long text (``chunks()``: a held-out document over 1 MiB, :func:`~neuronmoe.utils.io.read_texts` with
    ``long_text``) is tokenized a few pieces at a time and only as far as ``max_tokens`` needs
    (:func:`long_ids`), never whole."""
    if block_len < 2:
        raise ValueError(f"block_len must be >= 2, got {block_len}")
    prefix = prefix_token_id(tokenizer)
    blocks: list[list[int]] = []
    scored = 0
    for t in texts:
        if isinstance(t, str):
            ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        else:
            ids = long_ids(tokenizer, t, None if max_tokens is None else max_tokens - scored + 1)
        if max_tokens is not None:
            ids = ids[: max_tokens - scored + (1 if prefix is None else 0)]
        for b in document_windows(ids, prefix, block_len):
            blocks.append(b)
            scored += len(b) - 1
        if max_tokens is not None and scored >= max_tokens:
            break
    return blocks


def long_ids(tokenizer: Any, text: Any, need: int | None) -> list[int]:
    """The first ``need`` (None: all) ids of a long text, encoded in pieces cut at whitespace
    (:func:`~neuronmoe.data.tokenize.encode_stream`: the ids of the whole text for byte-level BPE tokenizers)."""
    import numpy as np

    from neuronmoe.data.tokenize import encode_stream, encoder

    parts, n = [], 0
    for ids in encode_stream(encoder(tokenizer), text.chunks()):
        parts.append(ids)
        n += len(ids)
        if need is not None and n >= need:
            break
    out = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return out[:need].tolist()


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[Any],
    block_len: int = 512,
    max_tokens: int | None = None,
    batch_size: int = 8,
    autocast_bf16: bool = False,
) -> dict[str, float]:
    """``{"perplexity", "nll", "tokens"}`` of ``texts`` under ``model`` (no gradients)."""
    import torch

    blocks = token_blocks(texts, tokenizer, block_len, max_tokens)
    if not blocks:
        raise ValueError("perplexity: no held-out text (need at least 1 token)")
    blocks.sort(key=len, reverse=True)  # similar lengths share a batch (less padding); the sum does not depend on it
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, total_n = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        with torch.no_grad():
            for i in range(0, len(blocks), batch_size):
                nll, n = _batch_nll(model, blocks[i: i + batch_size], pad, device, autocast_bf16)
                total_nll += nll
                total_n += n
    finally:
        model.train(was_training)
    mean = total_nll / max(total_n, 1)
    return {"perplexity": math.exp(min(mean, 700.0)), "nll": mean, "tokens": total_n}


def _batch_nll(model: Any, chunk: list[list[int]], pad: int, device: Any, autocast_bf16: bool) -> tuple[float, int]:
    """(summed NLL, predicted tokens) of right-padded windows."""
    import torch
    import torch.nn.functional as F

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
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum")
    return float(nll), int((target != -100).sum())


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
