"""Capture one hidden state per decoder layer (the *capture site*) and reduce it to sums of unit vectors.

Capture sites (``--capture-site``, :data:`CAPTURE_SITES`):

* ``mlp_input`` (default; what LayerMoE's similarity script captures): the output of the norm named
  by ``ArchSpec.mlp_input_norm`` (the post-attention norm for Llama/Qwen;
  ``pre_feedforward_layernorm`` for Gemma-2/3);
* ``attn_input``: the output of ``ArchSpec.attn_input_norm`` (``input_layernorm``), the attention's input;
* ``attn_output``: the attention block's own output (``self_attn``, before the residual add).

Tokens: non-padding, non-special (BOS/EOS/PAD are left out; ``include_bos`` keeps BOS, as LayerMoE's G1
measurement does), in file order, until each language has ``max_tokens``. The forward pass stops at
the last layer's capture site (no LM head).
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from neuronmoe.errors import ConfigError
from neuronmoe.similarity.core import UnitVectorSums

log = logging.getLogger(__name__)


class _StopForward(Exception):
    pass


#: capture site -> (ArchSpec field naming the hooked module of a decoder layer, what its output is)
CAPTURE_SITES: dict[str, tuple[str, str]] = {
    "mlp_input": ("mlp_input_norm", "the MLP-input norm"),
    "attn_input": ("attn_input_norm", "the attention-input norm"),
    "attn_output": ("attn", "the attention block"),
}
DEFAULT_CAPTURE_SITE = "mlp_input"


def capture_modules(model: Any, site: str = DEFAULT_CAPTURE_SITE) -> list[Any]:
    """The module of every decoder layer whose output is ``site``'s hidden state."""
    from neuronmoe.models.arch import UnsupportedArchitectureError, decoder_layers, get_arch

    if site not in CAPTURE_SITES:
        raise ConfigError(f"--capture-site: unknown site {site!r}; choose one of {', '.join(CAPTURE_SITES)}")
    field, what = CAPTURE_SITES[site]
    attr = getattr(get_arch(model), field)
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        mod = getattr(layer, attr, None)
        if mod is None:
            raise UnsupportedArchitectureError(f"decoder layer {i} ({type(layer).__name__}) has no {attr!r} ({what})")
        out.append(mod)
    return out


@dataclass(frozen=True)
class Capture:
    """How much is captured: tokens per language, texts per forward pass, tokens per text, whether BOS counts,
    and the capture site."""

    max_tokens: int
    batch_size: int = 8
    max_length: int = 256
    include_bos: bool = False
    site: str = DEFAULT_CAPTURE_SITE


def capture_unit_sums(model: Any, tokenizer: Any, texts_by_lang: dict[str, Iterable[str]], how: Capture | None = None,
                      **options: Any) -> tuple[UnitVectorSums, dict[str, int]]:
    """Run ``model`` over each language's texts; returns the sums of the capture site's unit vectors and the
    tokens used per language. ``how`` (or its fields as keywords: ``max_tokens=...``) says how much."""
    import torch

    from neuronmoe.models.arch import model_dims

    how = how if how is not None else Capture(**options)
    if how.max_tokens < 1:
        raise ConfigError(f"--max-tokens: must be >= 1, got {how.max_tokens}")
    norms = capture_modules(model, how.site)
    acc = UnitVectorSums(list(texts_by_lang), len(norms), model_dims(model)["hidden_size"])
    device = next(model.parameters()).device
    state: dict[str, Any] = {"special": _skipped_ids(tokenizer, how.include_bos, device)}
    handles = [norm.register_forward_hook(_unit_sum_hook(acc, state, i, len(norms))) for i, norm in enumerate(norms)]
    used: dict[str, int] = {}
    try:
        with torch.inference_mode():
            for lang, texts in texts_by_lang.items():
                used[lang] = _capture_language(model, tokenizer, lang, texts, how, state)
    finally:
        for h in handles:
            h.remove()
    return acc, used


def _skipped_ids(tokenizer: Any, include_bos: bool, device: Any) -> Any:
    """The special token ids left out (BOS kept with ``include_bos``), as a tensor on ``device``."""
    import torch

    skip = set(getattr(tokenizer, "all_special_ids", []) or [])
    if include_bos and getattr(tokenizer, "bos_token_id", None) is not None:
        skip.discard(tokenizer.bos_token_id)
    return torch.tensor(sorted(skip), dtype=torch.long, device=device)


def _unit_sum_hook(acc: UnitVectorSums, state: dict[str, Any], idx: int, n_layers: int) -> Any:
    """A forward hook adding the unit vectors of layer ``idx``'s output at ``state["mask"]`` for
    ``state["lang"]``; the last layer stops the forward pass."""
    def hook(_mod: Any, _inp: Any, out: Any) -> None:
        x = out[0] if isinstance(out, tuple) else out
        v = x[state["mask"]].double()
        u = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        acc.add_sum(state["lang"], idx, u.sum(0).cpu().numpy(), int(v.shape[0]))
        if idx == n_layers - 1:
            raise _StopForward
    return hook


def text_head(tokenizer: Any, text: Any, max_length: int) -> str:
    """The beginning of a long text (``chunks()``: a document over 1 MiB) holding more than ``max_length`` tokens, cut
    before whitespace: truncated to ``max_length`` tokens it gives the whole text's first tokens (byte-level BPE),
    and the rest of the text is never read or tokenized."""
    from neuronmoe.data.tokenize import encoder, stream_pieces

    enc = encoder(tokenizer)
    parts, n = [], 0
    for piece in stream_pieces(text.chunks()):
        parts.append(piece)
        n += len(enc([piece])[0])
        if n > max_length:
            break
    return "".join(parts)


def _capture_language(model: Any, tokenizer: Any, lang: str, texts: Iterable[str], how: Capture,
                      state: dict[str, Any]) -> int:
    """Feed one language's texts until ``how.max_tokens`` tokens are captured; returns the tokens used."""
    import torch

    device, special, max_tokens = next(model.parameters()).device, state["special"], how.max_tokens
    stream = (t if isinstance(t, str) else text_head(tokenizer, t, how.max_length)  # any iterable: read as needed
              for t in texts if (t and t.strip() if isinstance(t, str) else not t.blank))
    got = 0
    while got < max_tokens:
        batch = list(itertools.islice(stream, how.batch_size))
        if not batch:
            break
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=how.max_length)
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
    if got < max_tokens:
        log.warning("similarity: %s has only %d tokens (< %d requested)", lang, got, max_tokens)
    return got
