"""Batch tokenisation without special tokens, through the Rust backend when it is equivalent.

``transformers``' ``tokenizer(texts)`` builds a ``BatchEncoding`` (offsets, masks, Python
objects per token) that costs about a third of the time on top of the Rust encoder. For a fast
tokenizer, :func:`encoder` calls ``backend_tokenizer.encode_batch_fast`` directly, after checking
on the first batch that it returns exactly what ``tokenizer(texts, add_special_tokens=False)``
returns; any other tokenizer (or a mismatch) keeps the ``transformers`` call.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

Encoder = Callable[[Sequence[str]], list[list[int]]]


def _slow(tokenizer: Any) -> Encoder:
    def encode(texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                         return_token_type_ids=False, verbose=False)["input_ids"]

    return encode


def _backend(tokenizer: Any) -> Callable[[list[str]], list[Any]] | None:
    """``texts -> Encoding objects`` of the Rust backend when it encodes exactly like ``tokenizer``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast_fn = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
    return None if fast_fn is None else (lambda texts: fast_fn(texts, add_special_tokens=False))


def _checked(tokenizer: Any, fast: Callable[[list[str]], list[Any]], convert: Callable[[list[Any]], list[Any]],
             slow: Callable[[list[str]], list[Any]]) -> Callable[[Sequence[str]], list[Any]]:
    """Use ``convert(fast(texts))`` once the first batch showed it equals ``slow`` (ids compared)."""
    state: dict[str, Any] = {"use_fast": None}

    def run(texts: Sequence[str]) -> list[Any]:
        texts = list(texts)
        if not texts:
            return []
        if state["use_fast"] is None:
            head = texts[:64]
            state["use_fast"] = [e.ids for e in fast(head)] == _slow(tokenizer)(head)
        return convert(fast(texts)) if state["use_fast"] else slow(texts)

    return run


def encoder(tokenizer: Any) -> Encoder:
    """A function ``texts -> token ids`` equal to ``tokenizer(texts, add_special_tokens=False)``."""
    slow = _slow(tokenizer)
    fast = _backend(tokenizer)
    if fast is None:
        return slow
    return _checked(tokenizer, fast, lambda encs: [e.ids for e in encs], slow)


def lengths(tokenizer: Any) -> Callable[[Sequence[str]], list[int]]:
    """``texts -> token counts`` without special tokens (no id lists are built on the fast path)."""
    slow = _slow(tokenizer)
    fast = _backend(tokenizer)
    if fast is None:
        return lambda texts: [len(x) for x in slow(texts)]
    return _checked(tokenizer, fast, lambda encs: [len(e) for e in encs], lambda texts: [len(x) for x in slow(texts)])


def count_tokens(tokenizer: Any, batch: int = 512) -> Callable[[list[str], bool], list[int]]:
    """``(texts, special) -> token counts``; ``special`` adds the tokenizer's special tokens."""
    plain = lengths(tokenizer)

    def count(texts: list[str], special: bool) -> list[int]:
        out: list[int] = []
        for i in range(0, len(texts), batch):
            chunk = texts[i:i + batch]
            if special:
                enc = tokenizer(chunk, add_special_tokens=True, return_attention_mask=False,
                                return_token_type_ids=False, verbose=False)["input_ids"]
                out.extend(len(x) for x in enc)
            else:
                out.extend(plain(chunk))
        return out

    return count
