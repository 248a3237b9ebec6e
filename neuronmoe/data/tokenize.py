"""Batch tokenisation and token counts, through the Rust backend when it is equivalent.

``transformers``' ``tokenizer(texts)`` builds a ``BatchEncoding`` (offsets, masks, Python
objects per token) that costs about a third of the time on top of the Rust encoder. For a fast
tokenizer, :func:`encoder` calls ``backend_tokenizer.encode_batch_fast`` directly, after checking
on the first batch that it returns exactly what ``tokenizer(texts, add_special_tokens=False)``
returns (:func:`lengths` and :func:`count_tokens` likewise, with or without special tokens); any
other tokenizer (or a mismatch) keeps the ``transformers`` call.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

Encoder = Callable[[Sequence[str]], list[list[int]]]


def _slow(tokenizer: Any, special: bool = False) -> Encoder:
    def encode(texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return tokenizer(list(texts), add_special_tokens=special, return_attention_mask=False,
                         return_token_type_ids=False, verbose=False)["input_ids"]

    return encode


def _backend(tokenizer: Any, special: bool = False) -> Callable[[list[str]], list[Any]] | None:
    """``texts -> Encoding objects`` of the Rust backend (None for a tokenizer without one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast_fn = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
    return None if fast_fn is None else (lambda texts: fast_fn(texts, add_special_tokens=special))


def _checked(reference: Encoder, fast: Callable[[list[str]], list[Any]], convert: Callable[[list[Any]], list[Any]],
             slow: Callable[[list[str]], list[Any]]) -> Callable[[Sequence[str]], list[Any]]:
    """Use ``convert(fast(texts))`` once the first batch showed ``fast`` gives ``reference``'s ids, else ``slow``."""
    state: dict[str, Any] = {"use_fast": None}

    def run(texts: Sequence[str]) -> list[Any]:
        texts = list(texts)
        if not texts:
            return []
        if state["use_fast"] is None:
            head = texts[:64]
            state["use_fast"] = [e.ids for e in fast(head)] == reference(head)
        return convert(fast(texts)) if state["use_fast"] else slow(texts)

    return run


def encoder(tokenizer: Any) -> Encoder:
    """A function ``texts -> token ids`` equal to ``tokenizer(texts, add_special_tokens=False)``."""
    slow = _slow(tokenizer)
    fast = _backend(tokenizer)
    if fast is None:
        return slow
    return _checked(slow, fast, lambda encs: [e.ids for e in encs], slow)


def lengths(tokenizer: Any, special: bool = False) -> Callable[[Sequence[str]], list[int]]:
    """``texts -> token counts``, with the tokenizer's special tokens when ``special`` (no id lists are
    built on the fast path)."""
    slow = _slow(tokenizer, special)
    fast = _backend(tokenizer, special)
    if fast is None:
        return lambda texts: [len(x) for x in slow(texts)]
    return _checked(slow, fast, lambda encs: [len(e) for e in encs], lambda texts: [len(x) for x in slow(texts)])


def count_tokens(tokenizer: Any, batch: int = 512) -> Callable[[list[str], bool], list[int]]:
    """``(texts, special) -> token counts``; ``special`` adds the tokenizer's special tokens.

    Both go through the Rust backend (``encode_batch_fast`` with ``add_special_tokens`` as asked) once
    the first batch showed it gives the ``transformers`` call's ids; a tokenizer without a backend
    (ByT5 adds EOS only where the text does not end with it) keeps the ``transformers`` call.
    """
    plain, with_special = lengths(tokenizer), lengths(tokenizer, special=True)

    def count(texts: list[str], special: bool) -> list[int]:
        fn = with_special if special else plain
        out: list[int] = []
        for i in range(0, len(texts), batch):
            out.extend(fn(texts[i:i + batch]))
        return out

    return count
