"""Long documents in prepare-data, in bounded memory (issue 24, item 5).

A source gives a document longer than :data:`~neuronmoe.utils.longtext.LONG_TEXT_BYTES` as a :class:`LongDocument`
(its text located in the source file, or a string a library holds) instead of a list of paragraphs. Its analysis
(:func:`analyse_long`) reads the text in chunks, cuts it into the paragraphs :func:`~neuronmoe.data.text.paragraphs`
gives (:func:`stream_paragraphs`: runs cut at whitespace, where NFC and the whitespace rule split anyway) and those
into the sentences :func:`~neuronmoe.data.text.split_sentences` gives
(:class:`~neuronmoe.data.text.SentenceSplitter`); the sentences go to a spill file, one a line, and only their
dedup keys (8 bytes each), the paragraphs' sentence counts and the token count of the rebuilt document stay in
memory. After deduplication a :class:`KeptDocument` reads the kept sentences back: as sentences (the sample pool),
as the rebuilt text in chunks (token count, train/heldout files). Every output equals that of the document
processed whole; memory holds a few chunks and the longest sentence.
"""
from __future__ import annotations

import array
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from neuronmoe.data.text import SentenceSplitter, sentence_separator

#: characters of a paragraph given to the sentence splitter at once (cut at whitespace)
RUN_CHARS = 1 << 16
#: characters of rebuilt text per chunk
TEXT_CHUNK = 1 << 20

_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines splits
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.S)
_SPACE = re.compile(r"\s")
#: spill files: one sentence a line (sentences hold no line break), any string (lone surrogates of JSON escapes too)
_SPILL: dict[str, Any] = {"encoding": "utf-8", "errors": "surrogatepass", "newline": "\n"}


@dataclass(frozen=True)
class LongDocument:
    """A document read in chunks: ``text`` has ``chunks()`` (:class:`~neuronmoe.utils.longtext.FileText` or
    ``StrText``); ``spill_dir``: where its analysis writes its sentences (set by ``process_language``)."""

    text: Any
    spill_dir: str | None = None


def _words(s: str) -> str:
    return " ".join(unicodedata.normalize("NFC", s).split())


def stream_paragraphs(chunks: Iterable[str], window: int | None = None) -> Iterator[tuple[str, bool]]:
    """The paragraphs :func:`~neuronmoe.data.text.paragraphs` gives the text ``"".join(chunks)``, each as runs of
    about ``window`` characters at most (longer only for a longer word): ``(run, last run of its paragraph)``; a
    paragraph is ``" ".join`` of its runs. A cut falls at a line break or before whitespace, where NFC and the
    whitespace rule split anyway."""
    window = window or RUN_CHARS
    pending: list[str] = []  # the latest run of the current paragraph, not given yet

    def push(run: str, last: bool) -> Iterator[tuple[str, bool]]:
        if run:
            if pending:
                yield pending.pop(), False
            pending.append(run)
        if last and pending:
            yield pending.pop(), True

    buf = ""
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        pos = 0
        for m in _LINE_BREAK.finditer(buf):
            yield from push(_words(buf[pos:m.start()]), True)
            pos = m.end()
        buf = buf[pos:]
        while len(buf) > window:
            cut = _space_cut(buf, window)
            if cut <= 0:
                break  # one word so far: wait for its end
            yield from push(_words(buf[:cut]), False)
            buf = buf[cut:]
    yield from push(_words(buf), True)


def _space_cut(buf: str, window: int) -> int:
    """Where to cut ``buf`` before whitespace: the last whitespace within ``window`` characters, else the first one
    after them (-1: none)."""
    m = _UP_TO_LAST_SPACE.match(buf, 0, window)
    if m and m.end() > 1:
        return m.end() - 1
    m = _SPACE.search(buf, window)
    return m.start() if m else -1


@dataclass
class LongAnalysis:
    """What the analysis keeps of a long document: ``path``, its sentences one a line; their dedup ``keys``; the
    sentence count of each paragraph (``sizes``); ``tokens`` of the document rebuilt from all its sentences."""

    path: str
    keys: np.ndarray
    sizes: np.ndarray
    tokens: int
    script: str

    @property
    def n(self) -> int:
        return len(self.keys)

    def discard(self) -> None:
        Path(self.path).unlink(missing_ok=True)


class _Rebuilt:
    """The rebuilt text (paragraphs joined by newlines, sentences by the script's separator) of sentences given in
    order, cut into the pieces :func:`~neuronmoe.data.tokenize.pieces` gives it; counts their tokens."""

    def __init__(self, script: str, count: Callable[[list[str], bool], list[int]]) -> None:
        from neuronmoe.data.tokenize import PieceCutter

        self.sep, self.count, self.cut = sentence_separator(script), count, PieceCutter()
        self.tokens, self.any_par, self.in_par = 0, False, False

    def add(self, sents: list[str], par_ends: bool) -> None:
        if sents:
            head = self.sep if self.in_par else ("\n" if self.any_par else "")
            self._count(self.cut.feed(head + self.sep.join(sents)))
            self.any_par = self.in_par = True
        if par_ends:
            self.in_par = False

    def _count(self, pieces: list[str]) -> None:
        from neuronmoe.data.tokenize import BATCH_CHARS, PIECE_CHARS

        step = max(1, BATCH_CHARS // PIECE_CHARS)  # a few pieces per call: the tokenizer holds ~250 bytes a token
        for i in range(0, len(pieces), step):
            self.tokens += sum(self.count(pieces[i:i + step], False))

    def finish(self) -> int:
        self._count(self.cut.finish())
        return self.tokens


def analyse_long(lang: str, doc: LongDocument, count: Callable[[list[str], bool], list[int]]) -> LongAnalysis:
    """Split a long document into sentences (to a spill file in ``doc.spill_dir``), hash them, count its tokens."""
    from neuronmoe.data.dedup import sentence_keys
    from neuronmoe.languages import get_language

    script = get_language(lang).script
    fd, path = tempfile.mkstemp(prefix="sentences-", suffix=".txt", dir=doc.spill_dir)  # removed by discard()
    keys: list[np.ndarray] = []
    sizes = array.array("q")
    rebuilt = _Rebuilt(script, count)
    split, in_par = SentenceSplitter(script, lang), 0
    try:
        with open(fd, "w", **_SPILL) as fh:
            for run, last in stream_paragraphs(doc.text.chunks()):
                sents = split.feed(run) + (split.finish() if last else [])
                if sents:
                    fh.write("\n".join(sents) + "\n")
                    keys.append(sentence_keys(sents))
                in_par += len(sents)
                rebuilt.add(sents, last)
                if last:
                    sizes.append(in_par)
                    in_par = 0
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    return LongAnalysis(path, all_keys, np.frombuffer(sizes, dtype=np.int64).copy(), rebuilt.finish(), script)


class KeptDocument:
    """A long document after deduplication: the sentences ``keep`` selects (every one when None), read back from
    the spill file. Iterating gives the kept sentences; :meth:`chunks` the document rebuilt from them."""

    def __init__(self, la: LongAnalysis, keep: np.ndarray | None) -> None:
        self.la, self.keep = la, keep

    def _kept(self) -> Iterator[tuple[str, bool]]:
        """``(sentence, first kept one of its paragraph)`` for every kept sentence."""
        keep = self.keep
        with open(self.la.path, **_SPILL) as fh:
            i = 0
            for size in self.la.sizes.tolist():
                first = True
                for _ in range(size):
                    s = fh.readline()[:-1]
                    if keep is None or keep[i]:
                        yield s, first
                        first = False
                    i += 1

    def __iter__(self) -> Iterator[str]:
        return (s for s, _ in self._kept())

    def chunks(self, size: int | None = None) -> Iterator[str]:
        size = size or TEXT_CHUNK
        sep = sentence_separator(self.la.script)
        parts: list[str] = []
        n, started = 0, False
        for s, first in self._kept():
            parts.append((("\n" if started else "") if first else sep) + s)
            started = True
            n += len(parts[-1])
            if n >= size:
                yield "".join(parts)
                parts, n = [], 0
        if parts:
            yield "".join(parts)

    def read(self) -> str:
        return "".join(self.chunks())


class SentencePool:
    """The sample pool of one language in a temporary file, one JSON string a line (a long document may add
    millions of sentences): appended in order, read back in batches or by index."""

    def __init__(self, folder: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="pool-", suffix=".jsonl", dir=folder)
        self._fh = open(fd, "w", **_SPILL)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def extend(self, sentences: Iterable[str]) -> None:
        batch: list[str] = []
        for s in sentences:
            batch.append(s)
            if len(batch) >= 4096:
                self._write(batch)
                batch = []
        self._write(batch)

    def _write(self, batch: list[str]) -> None:
        if batch:
            self._fh.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in batch))
            self.n += len(batch)

    def batches(self, size: int = 8192) -> Iterator[list[str]]:
        self._fh.flush()
        with open(self.path, **_SPILL) as fh:
            batch: list[str] = []
            for line in fh:
                batch.append(json.loads(line))
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def take(self, rows: Iterable[int]) -> dict[int, str]:
        """``{row: sentence}`` for the given rows (one pass over the file)."""
        want, out = set(rows), {}
        for k, batch in enumerate(self.batches()):
            for i, s in enumerate(batch, k * 8192):
                if i in want:
                    out[i] = s
        return out

    def close(self) -> None:
        self._fh.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
