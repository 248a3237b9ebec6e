"""Capture the MLP input of every decoder layer and reduce it to sums of unit vectors.

The MLP input is the output of the norm named by ``ArchSpec.mlp_input_norm`` (the
post-attention norm for Llama/Qwen; ``pre_feedforward_layernorm`` for Gemma-2/3). Tokens:
non-padding, non-special (BOS/EOS/PAD are left out; ``include_bos`` keeps BOS, as LayerMoE's G1
measurement does), in file order, until each language has ``max_tokens``.
The forward pass stops after the last layer's norm (no last MLP, no LM head).
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable

from neuronmoe.similarity.core import UnitVectorSums

log = logging.getLogger(__name__)


class _StopForward(Exception):
    pass


def mlp_input_norms(model: Any) -> list[Any]:
    from neuronmoe.models.arch import UnsupportedArchitectureError, decoder_layers, get_arch

    spec = get_arch(model)
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        norm = getattr(layer, spec.mlp_input_norm, None)
        if norm is None:
            raise UnsupportedArchitectureError(
                f"decoder layer {i} ({type(layer).__name__}) has no {spec.mlp_input_norm!r} (the MLP-input norm)"
            )
        out.append(norm)
    return out


def capture_unit_sums(
    model: Any,
    tokenizer: Any,
    texts_by_lang: dict[str, Iterable[str]],
    max_tokens: int,
    batch_size: int = 8,
    max_length: int = 256,
    include_bos: bool = False,
) -> tuple[UnitVectorSums, dict[str, int]]:
    """Run ``model`` over each language's texts; returns the sums and the tokens used per language."""
    import torch

    from neuronmoe.models.arch import model_dims

    if max_tokens < 1:
        raise ValueError(f"--max-tokens: must be >= 1, got {max_tokens}")
    norms = mlp_input_norms(model)
    n_layers = len(norms)
    hidden = model_dims(model)["hidden_size"]
    langs = list(texts_by_lang)
    acc = UnitVectorSums(langs, n_layers, hidden)
    device = next(model.parameters()).device
    skip = set(getattr(tokenizer, "all_special_ids", []) or [])
    if include_bos and getattr(tokenizer, "bos_token_id", None) is not None:
        skip.discard(tokenizer.bos_token_id)
    special = torch.tensor(sorted(skip), dtype=torch.long, device=device)
    state: dict[str, Any] = {}

    def make_hook(idx: int):
        def hook(_mod, _inp, out):
            x = out[0] if isinstance(out, tuple) else out
            v = x[state["mask"]].double()
            u = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            acc.add_sum(state["lang"], idx, u.sum(0).cpu().numpy(), int(v.shape[0]))
            if idx == n_layers - 1:
                raise _StopForward
        return hook

    handles = [norm.register_forward_hook(make_hook(i)) for i, norm in enumerate(norms)]
    used: dict[str, int] = {}
    try:
        with torch.inference_mode():
            for lang in langs:
                texts = (t for t in texts_by_lang[lang] if t and t.strip())  # any iterable: read as needed
                got = 0
                while got < max_tokens:
                    batch = list(itertools.islice(texts, batch_size))
                    if not batch:
                        break
                    enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
                    ids = enc["input_ids"].to(device)
                    att = enc["attention_mask"].to(device).bool()
                    mask = att & ~torch.isin(ids, special) if special.numel() else att
                    flat = mask.flatten()
                    keep = torch.cumsum(flat.long(), 0) <= (max_tokens - got)
                    mask = (flat & keep).view_as(mask)
                    n = int(mask.sum())
                    if n == 0:
                        continue
                    state["mask"], state["lang"] = mask, lang
                    try:
                        model(input_ids=ids, attention_mask=att.long(), use_cache=False)
                    except _StopForward:
                        pass
                    got += n
                used[lang] = got
                if got < max_tokens:
                    log.warning("similarity: %s has only %d tokens (< %d requested)", lang, got, max_tokens)
    finally:
        for h in handles:
            h.remove()
    return acc, used
