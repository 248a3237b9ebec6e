"""Batch tokenisation and token counts, through the Rust backend when it is equivalent.

``transformers``' ``tokenizer(texts)`` builds a ``BatchEncoding`` (offsets, masks, Python
objects per token) that costs about a third of the time on top of the Rust encoder. For a fast
tokenizer, :func:`encoder` calls ``backend_tokenizer.encode_batch_fast`` directly, after checking
on the first batch that it returns exactly what ``tokenizer(texts, add_special_tokens=False)``
returns (:func:`lengths` and :func:`count_tokens` likewise, with or without special tokens); any
other tokenizer (or a mismatch) keeps the ``transformers`` call.

Memory stays bounded for any document: a tokenizer holds offsets, token strings and masks for every token of
the texts it encodes at once (~250 bytes per token: a 50 MB single-line document took prepare-data to 7.7 GB).
Texts longer than :data:`PIECE_CHARS` are encoded in pieces cut at whitespace (:func:`pieces`), a few pieces at
a time, and their ids joined into one array (counts summed). A cut falls before a space, where pre-tokenizers
split anyway, so ids are those of the whole text except that a tokenizer which marks the start of its input
(SentencePiece's prefix space) may differ by one token at each cut, once per 20,000 characters.
A text too long to hold at all (a document over 1 MiB, read in chunks) is cut the same way as it streams
(:class:`PieceCutter`): :func:`count_stream` and :func:`encode_stream` give what the whole text would.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

Encoder = Callable[[Sequence[str]], list[list[int]]]

#: longest text encoded in one call; longer ones are cut into pieces of at most this many characters
PIECE_CHARS = 20_000
#: characters encoded in one call when long texts are cut (a few pieces at a time)
BATCH_CHARS = 4 * PIECE_CHARS


def pieces(text: str, limit: int | None = None) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` (default :data:`PIECE_CHARS`) characters, each cut before a
    whitespace character in the last quarter of a piece when there is one (else at ``limit``);
    ``"".join(pieces(t)) == t``."""
    limit = limit or PIECE_CHARS
    if len(text) <= limit:
        return [text]
    out, start, n = [], 0, len(text)
    while n - start > limit:
        end = start + limit
        cut = max(text.rfind(" ", end - limit // 4, end), text.rfind("\n", end - limit // 4, end))
        end = cut if cut > start else end
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return out


class PieceCutter:
    """:func:`pieces` over a text given in chunks: :meth:`feed` returns the pieces complete so far, :meth:`finish`
    the rest; together exactly ``pieces("".join(chunks), limit)`` (a cut depends only on the ``limit`` characters
    after the previous one)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit, self._buf, self._n, self._any = limit or PIECE_CHARS, [], 0, False

    def feed(self, chunk: str) -> list[str]:
        self._buf.append(chunk)
        self._n += len(chunk)
        if self._n <= self.limit:
            return []
        text = "".join(self._buf)
        out = pieces(text, self.limit)
        rest = out.pop()  # at most limit characters: where it is cut depends on the text still to come
        self._buf, self._n, self._any = [rest], len(rest), True
        return out

    def finish(self) -> list[str]:
        """The last piece (the whole text when it was never cut, even empty)."""
        rest = "".join(self._buf)
        self._buf, self._n = [], 0
        return [rest] if rest or not self._any else []


def stream_pieces(chunks: Iterable[str], limit: int | None = None) -> Iterator[str]:
    """``pieces("".join(chunks), limit)``, one piece at a time, holding about ``limit`` characters."""
    cut = PieceCutter(limit)
    for c in chunks:
        yield from cut.feed(c)
    yield from cut.finish()


def _batched_pieces(chunks: Iterable[str]) -> Iterator[list[str]]:
    """The pieces of a text given in chunks, a few at a time (as :func:`_piecewise` encodes them)."""
    from neuronmoe.data.text import batched

    yield from batched(stream_pieces(chunks), max(1, BATCH_CHARS // PIECE_CHARS))


def count_stream(count: Callable[[list[str], bool], list[int]], chunks: Iterable[str]) -> int:
    """Tokens of a text given in chunks, without special tokens (``count``: :func:`count_tokens`): what
    ``count([text], False)`` gives the whole text, holding a few pieces at a time."""
    return sum(sum(count(batch, False)) for batch in _batched_pieces(chunks))


def encode_stream(encode: Encoder, chunks: Iterable[str]) -> Iterator[Any]:
    """The ids of a text given in chunks (``encode``: :func:`encoder`), as int64 arrays, a few pieces at a time:
    their concatenation is ``encode([text])[0]``."""
    import numpy as np

    for batch in _batched_pieces(chunks):
        ids = encode(batch)
        yield np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)


def _piecewise(fn: Callable[[list[str]], list[Any]], join: Callable[[list[Any]], Any],
               each: Callable[[Any], Any] = lambda r: r) -> Callable[[Sequence[str]], list[Any]]:
    """``fn`` over texts, with every text longer than :data:`PIECE_CHARS` encoded piece by piece (a few pieces
    per call), each piece's result made compact by ``each`` at once, and joined by ``join``; texts within the
    limit go through ``fn`` as they are."""
    def run(texts: Sequence[str]) -> list[Any]:
        texts = list(texts)
        if all(len(t) <= PIECE_CHARS for t in texts):
            return fn(texts)
        out: list[Any] = [None] * len(texts)
        short = [i for i, t in enumerate(texts) if len(t) <= PIECE_CHARS]
        for i, r in zip(short, fn([texts[i] for i in short]) if short else []):
            out[i] = r
        for i, t in enumerate(texts):
            if len(t) > PIECE_CHARS:
                parts, step = pieces(t), max(1, BATCH_CHARS // PIECE_CHARS)
                out[i] = join([each(r) for k in range(0, len(parts), step) for r in fn(parts[k:k + step])])
        return out

    return run


def _compact_ids(ids: Any) -> Any:
    import numpy as np

    return np.asarray(ids, dtype=np.int64)  # 8 bytes a token, not a Python int in a list


def _join_ids(parts: list[Any]) -> Any:
    import numpy as np

    return np.concatenate(parts)


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
        return _piecewise(slow, _join_ids, _compact_ids)
    return _piecewise(_checked(slow, fast, lambda encs: [e.ids for e in encs], slow), _join_ids, _compact_ids)


def lengths(tokenizer: Any, special: bool = False) -> Callable[[Sequence[str]], list[int]]:
    """``texts -> token counts``, with the tokenizer's special tokens when ``special`` (no id lists are
    built on the fast path)."""
    slow = _slow(tokenizer, special)
    fast = _backend(tokenizer, special)
    plain = _slow(tokenizer, False)
    if fast is None:
        run = _checked_lengths(lambda texts: [len(x) for x in slow(texts)])
    else:
        run = _checked(slow, fast, lambda encs: [len(e) for e in encs], lambda texts: [len(x) for x in slow(texts)])
    if not special:
        return _piecewise(run, sum)
    # with special tokens: the pieces without them, plus what the tokenizer adds to one whole text
    extra = len(slow([""])[0]) - len(plain([""])[0])
    return _piecewise(run, lambda parts: sum(parts) - extra * (len(parts) - 1))


def _checked_lengths(fn: Callable[[list[str]], list[int]]) -> Callable[[Sequence[str]], list[int]]:
    return lambda texts: fn(list(texts)) if texts else []


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
