"""Streaming tokenisation and packing of training documents, in bounded memory.

:func:`build_blocks` writes one cache entry (``input_ids.bin``, ``lang_flags.bin``,
``meta.json``) from a list of sources in four steps, none of which holds the corpus in memory:

1. **Documents** of each source (non-blank, the first ``max_samples``) are written once to a
   document store (``<root>/docs/<source key>.txt``: the texts one after another, and
   ``.offsets``: where each starts; :class:`DocWriter`), a long one chunk by chunk.
2. **Order**: :func:`seeded_permutation` gives the order ``random.Random(seed).shuffle`` gives a
   list of all documents (the order the in-memory packer used), as a ``uint32`` array.
3. **Tokenise**: contiguous segments of that order (about :data:`SEGMENT_BYTES` of text each) go
   through ``Dataset.map(batched=True, num_proc=...)`` (:func:`default_num_proc` processes when
   none are given); each batch reads its documents with :class:`MappedTexts` (``pread``) and each
   segment's result is cached under ``<root>/segments/<fingerprint>.arrow`` (``datasets``'
   fingerprint cache), so a killed build resumes at the first unfinished segment.
4. **Pack**: the segments are read back record batch by record batch; each document + EOS is
   appended to a :class:`BlockWriter` that writes every full ``cutoff_len`` block to disk. With a
   token budget (``max_blocks``) reading stops at the last block needed, so the remaining
   segments are never tokenised.

Memory stays bounded for any document (issue 24, item 5): a document over :func:`long_bytes` (1 MiB) gets no ids
in step 3; step 4 reads its text in chunks and tokenizes it a few pieces at a time
(:func:`~neuronmoe.data.tokenize.encode_stream`, the ids of the whole text), straight into the writer in the
storage type. A 100 MB line then costs a few MB, not the 1.4 GB of its text, int64 ids and their copies.

Token ids are stored as ``uint16`` when the vocabulary fits (``len(tokenizer) <= 65536``, e.g.
SmolLM2, Qwen-1.5 does not), else ``uint32``; an id outside the storage type is an error, never
wrapped. Flags are ``int8`` (1 = old language, 0 = new).
"""
from __future__ import annotations

import array
import hashlib
import itertools
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from neuronmoe.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DOCS_FORMAT = 2
SEGMENT_FORMAT = 2
#: text bytes per tokenisation segment (the granularity of resuming and of the budget's overshoot)
SEGMENT_BYTES = 64 << 20
#: below this many text bytes a segment is tokenised in this process (no worker start-up)
INLINE_BYTES = 8 << 20
#: text bytes per tokenizer call (bounds the Encoding objects alive at once, about 60 bytes per token)
BATCH_BYTES = 512 << 10
#: by default, worker processes tokenise only on machines with at least this many cores; below it one
#: process whose fast tokenizer encodes each batch on all cores (its own threads) is faster: on 2 cores,
#: 1.56M vs 1.35M tokens/s at 10M tokens (benchmarks/bench_data.py), as the workers' start-up, Arrow
#: hand-over and the idle main process cost more than the serial Python share of the one-process path
MIN_CORES_FOR_WORKERS = 4


def _digest(obj: Any, n: int = 24) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def storage_dtype(tokenizer: Any) -> np.dtype:
    """``uint16`` when every id of ``tokenizer`` fits in 16 bits, else ``uint32``."""
    eos = getattr(tokenizer, "eos_token_id", None)
    n = max(len(tokenizer), (eos or 0) + 1)
    return np.dtype(np.uint16) if n <= 1 << 16 else np.dtype(np.uint32)


def check_ids(max_id: int, dtype: np.dtype, what: str) -> None:
    if max_id > np.iinfo(dtype).max:
        raise InputError(
            f"{what}: token id {max_id} does not fit the {dtype.name} token storage chosen for this tokenizer "
            f"(ids up to {np.iinfo(dtype).max}); its vocabulary reports fewer ids than it produces"
        )


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """``p`` such that ``random.Random(seed).shuffle(x)`` reorders any ``x`` of length ``n`` to ``[x[i] for i in p]``.

    The same Fisher-Yates walk as :meth:`random.Random.shuffle` over a compact array of
    indices (4 bytes per document, not a Python list), so blocks equal the in-memory packer's.
    """
    typecode = "I" if n < 1 << 32 else "Q"
    a = array.array(typecode, range(n))
    randbelow = random.Random(seed)._randbelow  # what shuffle() calls
    for i in reversed(range(1, n)):
        j = randbelow(i + 1)
        a[i], a[j] = a[j], a[i]
    return np.frombuffer(a, dtype=np.uint32 if typecode == "I" else np.uint64) if n else np.zeros(0, np.uint32)


# --------------------------------------------------------------------------------------------
# 1. documents -> a document store
# --------------------------------------------------------------------------------------------
@dataclass
class SourceDocs:
    """The documents of one source in a document store (``path``: their texts; :class:`DocWriter`) and what reading
    them found."""

    path: Path
    info: dict[str, Any]


class DocWriter:
    """Documents appended to a store: ``<name>.txt`` their UTF-8 texts one after another, ``<name>.offsets`` where
    each starts (int64 little-endian, one more than the documents). A long text (``chunks()``) is written chunk by
    chunk, so no document is ever held whole."""

    def __init__(self, path: Path) -> None:
        self._texts = open(path, "wb")
        self._offsets = open(offsets_path(path), "wb")
        self._pending = array.array("q", [0])
        self.n = self.nbytes = 0

    def add(self, text: Any) -> None:
        from neuronmoe.utils.longtext import text_chunks

        parts = [text] if isinstance(text, str) and len(text) <= 1 << 20 else text_chunks(text)
        for part in parts:
            b = part.encode("utf-8")
            self._texts.write(b)
            self.nbytes += len(b)
        self.n += 1
        self._pending.append(self.nbytes)
        if len(self._pending) >= 1 << 16:
            self._flush()

    def _flush(self) -> None:
        self._offsets.write(np.asarray(self._pending, dtype="<i8").tobytes())
        self._pending = array.array("q")

    def close(self) -> None:
        self._flush()
        self._texts.close()
        self._offsets.close()


def offsets_path(path: Path | str) -> Path:
    return Path(path).with_suffix(".offsets")


def _store_holds(path: Path, n: int) -> bool:
    """The store at ``path`` holds ``n`` documents (its two files agree)."""
    offs = offsets_path(path)
    if not path.is_file() or not offs.is_file() or offs.stat().st_size != 8 * (n + 1):
        return False
    last = np.fromfile(offs, dtype="<i8", count=1, offset=8 * n)
    return int(last[0]) == path.stat().st_size


def source_documents(src: Any, root: Path, read: Callable[[Any, dict], Iterator[Any]], progress: bool = True) -> SourceDocs:
    """Write (once) the document store of ``src``; ``read(src, stats)`` yields texts (strings or long texts)."""
    from neuronmoe.utils.io import atomic_write_json

    key = _digest({"format": DOCS_FORMAT, **src.identity()})
    path = root / "docs" / f"{key}.txt"
    info_path = path.with_suffix(".json")
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
            if _store_holds(path, int(info["documents"])):
                return SourceDocs(path, info)
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged cache file is rebuilt
            log.warning("document cache %s unreadable (%s); rewriting it", path, e)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.txt")
    stats: dict[str, int] = {"blank_documents": 0}
    from tqdm.auto import tqdm

    writer = DocWriter(tmp)
    try:
        with tqdm(desc=f"reading {src.lang} documents", unit=" docs", disable=not progress, leave=False) as bar:
            for text in read(src, stats):
                writer.add(text)
                bar.update(1)
    finally:
        writer.close()
    n, nbytes = writer.n, writer.nbytes
    if n == 0:
        tmp.unlink(missing_ok=True)
        offsets_path(tmp).unlink(missing_ok=True)
        blank = stats["blank_documents"]
        raise InputError(f"data source {src.spec} ({src.lang}) is empty: no document with text"
                         + (f" ({blank} blank)" if blank else ""))
    os.replace(offsets_path(tmp), offsets_path(path))
    os.replace(tmp, path)
    info = {"key": key, "spec": src.spec, "lang": src.lang, "documents": n, "bytes": nbytes, **stats}
    atomic_write_json(info_path, info)
    return SourceDocs(path, info)


# --------------------------------------------------------------------------------------------
# 3. tokenisation of one segment (runs in datasets' worker processes)
# --------------------------------------------------------------------------------------------
_ENCODERS: dict[int, Callable[[Sequence[str]], list[list[int]]]] = {}


def _encoder(tokenizer: Any) -> Callable[[Sequence[str]], list[Any]]:
    from neuronmoe.data.tokenize import encoder

    enc = _ENCODERS.get(id(tokenizer))
    if enc is None:
        enc = _ENCODERS[id(tokenizer)] = encoder(tokenizer)
    return enc


def long_bytes() -> int:
    """Documents longer than this many bytes are tokenized while packing, piece by piece (never whole)."""
    from neuronmoe.utils import longtext

    return longtext.LONG_TEXT_BYTES


class MappedTexts:
    """The documents of the sources' stores (:class:`DocWriter`), read document by document with ``pread``.

    Only the offsets are held (8 bytes per document, like the permutation); :meth:`take` reads each document's
    bytes with ``os.pread`` (no memory map: reading documents in permuted order through one left their pages mapped,
    +206 MB of RSS at 100M tokens), so RSS holds one batch of texts for any corpus; :meth:`chunks` reads one
    document in pieces. Pickles as the file paths (worker processes open them again).
    """

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [str(p) for p in paths]
        self._open()

    def _open(self) -> None:
        self._fds = [os.open(p, os.O_RDONLY) for p in self.paths]
        self._offs = [np.fromfile(offsets_path(p), dtype="<i8") for p in self.paths]
        self._starts = np.concatenate([[0], np.cumsum([len(o) - 1 for o in self._offs])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.paths = state["paths"]
        self._open()

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", []):
            try:
                os.close(fd)
            except OSError:
                pass

    def _where(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        return which, rows - self._starts[which]

    def sizes(self, rows: Any) -> np.ndarray:
        """The UTF-8 length of documents ``rows``."""
        which, local = self._where(rows)
        out = np.empty(len(local), dtype=np.int64)
        for k in np.unique(which).tolist():
            m = which == k
            o = self._offs[k]
            out[m] = o[local[m] + 1] - o[local[m]]
        return out

    def take(self, rows: Any) -> list[str]:
        """Documents ``rows`` (indices over all files, in order) as Python strings."""
        which, local = self._where(rows)
        out: list[str] = []
        pread = os.pread
        for r, k in zip(local.tolist(), which.tolist()):
            a, b = int(self._offs[k][r]), int(self._offs[k][r + 1])
            raw = pread(self._fds[k], b - a, a)
            if len(raw) != b - a:
                raise InputError(f"{self.paths[k]}: short read (the file changed while packing?)")
            out.append(raw.decode("utf-8"))
        return out

    def chunks(self, row: int) -> Iterator[str]:
        """Document ``row`` in pieces of about a MiB."""
        from neuronmoe.utils.longtext import FileText

        which, local = self._where([row])
        k, r = int(which[0]), int(local[0])
        a, b = int(self._offs[k][r]), int(self._offs[k][r + 1])
        return FileText(self.paths[k], a, b, escaped=False, nbytes=b - a).chunks()


def _encode_rows(batch: Any, texts: Any, tokenizer: Any, dtype: str) -> Any:
    """``map`` function: document indices (an Arrow batch) -> ``doc`` + ``input_ids`` (list<dtype>). A document
    over :func:`long_bytes` gets no ids here: the packer tokenizes it piece by piece (:meth:`_Packer.long`)."""
    import pyarrow as pa

    enc = _encoder(tokenizer)
    doc = batch.column("doc")
    rows = doc.to_numpy()
    short = texts.sizes(rows) <= long_bytes()
    got = iter(enc(texts.take(rows[short])) if short.any() else [])
    ids = [next(got) if s else [] for s in short.tolist()]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(offsets[-1]))
    dt = np.dtype(dtype)
    if flat.size:
        check_ids(int(flat.max()), dt, "tokenizing the training documents")
    values = pa.array(flat.astype(dt))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.table({"doc": doc, "input_ids": lists})


def shard_files(cache_file: Path, n_rows: int, num_proc: int | None) -> list[tuple[Path, int]]:
    """The files ``Dataset.map`` writes for ``n_rows`` rows with ``num_proc`` workers, with each one's row count.

    ``datasets`` cuts the rows into ``num_proc`` contiguous shards (the first ``n_rows % num_proc``
    one row longer) written to ``<stem>_<rank:05d>_of_<num_proc:05d>.arrow``; one process writes
    ``cache_file`` itself.
    """
    if not num_proc or num_proc <= 1:
        return [(cache_file, n_rows)]
    div, mod = divmod(n_rows, num_proc)
    return [(cache_file.with_name(f"{cache_file.stem}_{r:05d}_of_{num_proc:05d}{cache_file.suffix}"), div + (r < mod))
            for r in range(num_proc)]


def arrow_rows(path: Path) -> int | None:
    """Rows of an Arrow stream file read to its end; None when it is damaged (cut, not Arrow)."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(path), "rb") as fh:
            return sum(rb.num_rows for rb in pa.ipc.open_stream(fh))
    except (pa.ArrowException, OSError):
        return None


def drop_damaged(files: Sequence[tuple[Path, int]], what: str) -> None:
    """Delete the cached files among ``files`` that do not hold their row count (left by a killed or
    failed write), so that ``datasets`` writes them again instead of loading a short table."""
    for path, rows in files:
        if path.is_file():
            got = arrow_rows(path)
            if got != rows:
                log.warning("%s: cached file %s holds %s rows, expected %d (an interrupted write?); tokenizing it again",
                            what, path, "unreadable" if got is None else got, rows)
                path.unlink()


def tokenize_segment(texts: Any, doc_ids: np.ndarray, tokenizer: Any, dtype: np.dtype, cache_file: Path,
                     num_proc: int | None, desc: str, batch_size: int = 1024) -> list[str]:
    """Tokenise documents ``doc_ids`` of ``texts`` (in that order); returns the Arrow files, in order.

    ``cache_file`` is named by the segment's fingerprint (``<fingerprint>.arrow``, also ``datasets``' fingerprint):
    cached files of an earlier build are reused when they hold every row, rewritten otherwise.
    """
    import datasets

    fingerprint = cache_file.stem

    idx = datasets.Dataset.from_dict({"doc": doc_ids}, features=datasets.Features({"doc": datasets.Value("uint32")}))
    features = datasets.Features({"doc": datasets.Value("uint32"),
                                  "input_ids": datasets.LargeList(datasets.Value(dtype.name))})
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    if num_proc is not None:
        num_proc = max(1, min(num_proc, len(doc_ids)))
    drop_damaged(shard_files(cache_file, len(doc_ids), num_proc), desc)
    import gc

    gc.freeze()  # forked workers: the parent's objects stay out of their collections (fewer copied pages)
    try:
        out = idx.with_format("arrow").map(
            _encode_rows, batched=True, batch_size=batch_size, num_proc=num_proc, features=features,
            fn_kwargs={"texts": texts, "tokenizer": tokenizer, "dtype": dtype.name},
            cache_file_name=str(cache_file), new_fingerprint=fingerprint, load_from_cache_file=True, desc=desc,
        )
    finally:
        gc.unfreeze()
    files = [f["filename"] for f in out.cache_files]
    if len(out) != len(doc_ids) or not files:
        raise RuntimeError(f"{desc}: {len(out)} rows for {len(doc_ids)} documents")
    return files


def iter_tokenized(files: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(doc ids, offsets, token ids)`` per record batch, read sequentially (not memory-mapped)."""
    import pyarrow as pa

    for f in files:
        with pa.OSFile(f, "rb") as fh:
            reader = pa.ipc.open_stream(fh)
            for rb in reader:
                if rb.num_rows == 0:
                    continue
                lists = rb.column("input_ids")
                offs = lists.offsets.to_numpy()
                vals = lists.values.to_numpy(zero_copy_only=False)[offs[0]:offs[-1]]
                yield rb.column("doc").to_numpy(zero_copy_only=False), offs - offs[0], vals


# --------------------------------------------------------------------------------------------
# 4. the streaming packer
# --------------------------------------------------------------------------------------------
class BlockWriter:
    """Cut a token stream into ``cutoff_len`` blocks, written to ``input_ids.bin`` / ``lang_flags.bin``.

    Only the incomplete last block stays in memory. ``max_blocks`` stops the writer:
    :meth:`add` then takes only the tokens that fill the last block.
    """

    def __init__(self, folder: Path, cutoff_len: int, dtype: np.dtype, max_blocks: int | None = None):
        if cutoff_len < 2:
            raise ConfigError(f"cutoff_len must be >= 2, got {cutoff_len}")
        self.cutoff = cutoff_len
        self.dtype = np.dtype(dtype)
        self.max_blocks = max_blocks
        self.blocks = 0
        self.old_tokens = 0
        self._ids = open(folder / "input_ids.bin", "wb")
        self._flags = open(folder / "lang_flags.bin", "wb")
        self._carry_ids = np.zeros(0, dtype=self.dtype)
        self._carry_flags = np.zeros(0, dtype=np.int8)

    @property
    def full(self) -> bool:
        return self.max_blocks is not None and self.blocks >= self.max_blocks

    def room(self) -> int | None:
        """Tokens the writer still takes (None: unlimited)."""
        if self.max_blocks is None:
            return None
        return max(0, (self.max_blocks - self.blocks) * self.cutoff - len(self._carry_ids))

    def add(self, ids: np.ndarray, flags: np.ndarray) -> int:
        """Append tokens with their flags; returns how many were taken."""
        room = self.room()
        take = len(ids) if room is None else min(len(ids), room)
        if take == 0:
            return 0
        ids = np.concatenate([self._carry_ids, ids[:take].astype(self.dtype, copy=False)])
        flags = np.concatenate([self._carry_flags, flags[:take].astype(np.int8, copy=False)])
        n = len(ids) // self.cutoff * self.cutoff
        if n:
            ids[:n].tofile(self._ids)
            flags[:n].tofile(self._flags)
            self.blocks += n // self.cutoff
            self.old_tokens += int(np.count_nonzero(flags[:n]))
        self._carry_ids, self._carry_flags = ids[n:].copy(), flags[n:].copy()
        return take

    def close(self) -> int:
        """Flush and close; the incomplete tail is dropped. Returns the number of blocks."""
        for fh in (self._ids, self._flags):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        return self.blocks


def with_eos(offsets: np.ndarray, values: np.ndarray, eos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Documents given by ``offsets`` into ``values``, each followed by ``eos``: (stream, per-document lengths)."""
    lens = np.diff(offsets)
    if eos is None:
        return values, lens
    out = np.empty(len(values) + len(lens), dtype=values.dtype)
    ends = np.cumsum(lens + 1) - 1
    mask = np.ones(len(out), dtype=bool)
    mask[ends] = False
    out[mask] = values
    out[ends] = eos
    return out, lens + 1


# --------------------------------------------------------------------------------------------
# the whole build
# --------------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    blocks: int
    meta: dict[str, Any] = field(default_factory=dict)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_proc(cores: int | None = None) -> int | None:
    """Tokenising processes when none are asked for: ``min(8, cores)`` from :data:`MIN_CORES_FOR_WORKERS`
    cores on, else None (this process, with the tokenizer's own threads)."""
    cores = _cores() if cores is None else cores
    return min(8, cores) if cores >= MIN_CORES_FOR_WORKERS else None


def plan_segments(n_docs: int, total_bytes: int, segment_bytes: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` ranges of the permuted order, about ``segment_bytes`` of text each."""
    if n_docs == 0:
        return []
    per = max(1, int(n_docs * segment_bytes / max(1, total_bytes)))
    return [(a, min(n_docs, a + per)) for a in range(0, n_docs, per)]


@dataclass(frozen=True)
class PackJob:
    """What one packing build packs and how: the sources, the tokenizer (and its fingerprint), the block length,
    the shuffling seed, the block budget (None: every document), the tokenising processes, progress bars."""

    sources: Sequence[Any]
    tokenizer: Any
    tok_fp: str
    cutoff_len: int
    seed: int
    max_blocks: int | None = None
    num_proc: int | None = None
    progress: bool = True


class _Usage:
    """Documents and tokens of each source that went into blocks."""

    def __init__(self, n_sources: int) -> None:
        self.docs = np.zeros(n_sources, dtype=np.int64)
        self.tokens = np.zeros(n_sources, dtype=np.int64)

    def add(self, src: np.ndarray, lens: np.ndarray, taken: int) -> None:
        """Count a batch of documents (source index and length each) of which the first ``taken`` tokens were kept."""
        if taken < int(lens.sum()):  # budget reached inside this batch
            ends = np.cumsum(lens)
            n_in = int(np.searchsorted(ends - lens, taken, side="left"))
            part = lens[:n_in].copy()
            if n_in:  # the last document is cut where the budget ends
                part[-1] -= int(ends[n_in - 1] - taken)
            np.add.at(self.docs, src[:n_in], 1)
            np.add.at(self.tokens, src[:n_in], part)
        else:
            np.add.at(self.docs, src, 1)
            np.add.at(self.tokens, src, lens)


def build_blocks(job: PackJob, docs: Sequence[SourceDocs], folder: Path, work_root: Path,
                 segment_bytes: int | None = None) -> BuildResult:
    """Steps 2-4 into ``folder`` (which must exist); intermediate files under ``work_root``."""
    dtype = storage_dtype(job.tokenizer)
    eos = job.tokenizer.eos_token_id
    if eos is not None:
        check_ids(int(eos), dtype, "the tokenizer's EOS token")
    sizes = np.array([d.info["documents"] for d in docs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n_docs = int(starts[-1])
    if n_docs >= 1 << 32:
        raise InputError(f"{n_docs} training documents: more than 2**32 are not supported")
    total_bytes = int(sum(d.info["bytes"] for d in docs))
    segment_bytes = segment_bytes or SEGMENT_BYTES
    segments = plan_segments(n_docs, total_bytes, segment_bytes)
    writer = BlockWriter(folder, job.cutoff_len, dtype, job.max_blocks)
    usage = _Usage(len(job.sources))
    try:
        done = _pack_segments(job, docs, segments, starts, writer, usage, work_root)
    finally:
        blocks = writer.close()
    meta = {
        "storage_dtype": dtype.name,
        "max_blocks": job.max_blocks,
        "complete": int(usage.docs.sum()) == n_docs,
        "segments": {"planned": len(segments), "tokenized": done, "bytes": segment_bytes},
        "per_source": [{"documents_used": int(u), "tokens_used": int(t)} for u, t in zip(usage.docs, usage.tokens)],
        "old_tokens": writer.old_tokens,
    }
    return BuildResult(blocks, meta)


class _Packer:
    """Feeds tokenized record batches to the :class:`BlockWriter`, in order, counting what each source gave; a long
    document (no ids in its segment) is tokenized here from its text, piece by piece, straight into the writer."""

    def __init__(self, job: PackJob, texts: MappedTexts, starts: np.ndarray, writer: BlockWriter, usage: _Usage) -> None:
        self.job, self.texts, self.starts, self.writer, self.usage = job, texts, starts, writer, usage
        self.eos = job.tokenizer.eos_token_id
        self.flags = np.array([s.flag for s in job.sources], dtype=np.int8)

    def batch(self, doc: np.ndarray, offs: np.ndarray, vals: np.ndarray) -> None:
        long = np.flatnonzero(self.texts.sizes(doc) > long_bytes()).tolist()
        a = 0
        for j in long + [len(doc)]:
            if j > a:
                self.rows(doc[a:j], offs[a:j + 1] - offs[a], vals[offs[a]:offs[j]])
            if self.writer.full:
                return
            if j < len(doc):
                self.long(int(doc[j]))
            a = j + 1

    def rows(self, doc: np.ndarray, offs: np.ndarray, vals: np.ndarray) -> None:
        src = np.searchsorted(self.starts, doc, side="right") - 1
        stream, lens = with_eos(offs, vals, self.eos)
        self.usage.add(src, lens, self.writer.add(stream, np.repeat(self.flags[src], lens)))

    def long(self, row: int) -> None:
        """Document ``row`` + EOS, tokenized a few pieces at a time (:func:`~neuronmoe.data.tokenize.encode_stream`:
        the ids of the whole text), until it ends or the budget does."""
        from neuronmoe.data.tokenize import encode_stream

        src = int(np.searchsorted(self.starts, row, side="right") - 1)
        flag, dtype, taken = self.flags[src], self.writer.dtype, 0
        parts = encode_stream(_encoder(self.job.tokenizer), self.texts.chunks(row))
        tail = [np.array([self.eos], dtype=np.int64)] if self.eos is not None else []
        for ids in itertools.chain(parts, tail):
            if ids.size:
                check_ids(int(ids.max()), dtype, "tokenizing the training documents")
            got = self.writer.add(ids, np.full(len(ids), flag, dtype=np.int8))
            taken += got
            if got < len(ids):
                break
        if taken:
            self.usage.docs[src] += 1
            self.usage.tokens[src] += taken


def _pack_segments(job: PackJob, docs: Sequence[SourceDocs], segments: list[tuple[int, int]], starts: np.ndarray,
                   writer: BlockWriter, usage: _Usage, work_root: Path) -> int:
    """Tokenise the permuted documents segment by segment into ``writer`` until its budget is full; returns the
    number of segments tokenised."""
    from tqdm.auto import tqdm

    dtype, n_docs = writer.dtype, int(starts[-1])
    texts = MappedTexts([d.path for d in docs])
    packer = _Packer(job, texts, starts, writer, usage)
    total_bytes = int(sum(d.info["bytes"] for d in docs))
    perm = seeded_permutation(n_docs, job.seed)
    batch_size = int(np.clip(BATCH_BYTES * n_docs // max(1, total_bytes), 8, 1024))
    docs_key = [d.info["key"] for d in docs]
    done = 0
    with tqdm(total=job.max_blocks, desc="packing blocks", unit=" blocks", disable=not job.progress, leave=False) as bar:
        for k, (a, b) in enumerate(segments):
            if writer.full:
                break
            procs = None if total_bytes * (b - a) / n_docs < INLINE_BYTES else (job.num_proc or default_num_proc())
            fp = _digest({"format": SEGMENT_FORMAT, "docs": docs_key, "seed": job.seed, "range": [a, b],
                          "tokenizer": job.tok_fp, "dtype": dtype.name, "long_bytes": long_bytes()})
            files = tokenize_segment(texts, perm[a:b], job.tokenizer, dtype, work_root / "segments" / f"{fp}.arrow",
                                     procs if procs and procs > 1 else None,
                                     desc=f"tokenizing segment {k + 1}/{len(segments)}", batch_size=batch_size)
            done += 1
            for doc, offs, vals in iter_tokenized(files):
                before = writer.blocks
                packer.batch(doc, offs, vals)
                bar.update(writer.blocks - before)
                if writer.full:
                    break
    return done
