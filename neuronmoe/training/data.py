"""Training data: read documents, tokenize, pack into fixed-length blocks with language flags.

A *source* is one stream of documents with a language flag:

* a local ``.jsonl`` file whose lines are objects with a ``"text"`` field, or
* ``hf:NAME[:CONFIG]``: a Hugging Face dataset read with ``datasets.load_dataset(NAME, CONFIG,
  split=..., streaming=True)`` (NAME may be a hub id or a local dataset folder).

Every source is capped at ``max_samples`` documents (the first non-blank ones of the
file/stream); the documents of all sources are shuffled together with ``seed`` (the order
``random.Random(seed).shuffle`` gives), each is tokenized and followed by EOS, and the token
stream is cut into ``cutoff_len`` blocks (the incomplete tail is dropped). Every token keeps the
flag of its document: ``1`` = old language (replay, LPR target expert 0), ``0`` = new language.
With a token budget (``max_tokens``) only the first ``ceil(max_tokens / cutoff_len)`` blocks are
built, and tokenizing stops there.

:func:`build_packed` streams all of this through ``datasets`` Arrow files and
:mod:`neuronmoe.training.packing` (memory does not grow with the corpus) into
``$NEURONMOE_CACHE/tokenized/<key>/`` (``input_ids.bin``, ``lang_flags.bin``, ``meta.json``); the key
hashes the sources (file sha256 / dataset id), the tokenizer fingerprint, the cutoff, the caps,
the seed and the budget. Every process (every rank) memory-maps the same files: the first one to
take the entry's file lock builds it, the others wait and map it.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from neuronmoe.errors import ConfigError, InputError
from neuronmoe.training.packing import PackJob
from neuronmoe.utils.io import iter_jsonl

log = logging.getLogger(__name__)

OLD, NEW = 1, 0
CACHE_FORMAT = 2


@dataclass(frozen=True)
class Source:
    """One document stream: a jsonl path or ``hf:NAME[:CONFIG]``; ``flag`` 1 = old language."""

    spec: str
    lang: str
    flag: int
    max_samples: int | None = None
    split: str = "train"
    text_field: str = "text"

    @property
    def is_hf(self) -> bool:
        return self.spec.startswith("hf:")

    def hf_name_config(self) -> tuple[str, str | None]:
        rest = self.spec[3:]
        if not rest:
            raise ConfigError(f"data source {self.spec!r}: expected hf:NAME[:CONFIG]")
        name, _, config = rest.partition(":")
        return name, (config or None)

    def check(self) -> None:
        if self.flag not in (OLD, NEW):
            raise ConfigError(f"data source {self.spec}: flag must be 0 (new) or 1 (old), got {self.flag}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"data source {self.spec}: max_samples must be >= 1 or unset, got {self.max_samples}")
        if self.is_hf:
            self.hf_name_config()
        elif not Path(self.spec).is_file():
            raise FileNotFoundError(f"training data {self.spec} ({self.lang}): file not found")

    def identity(self) -> dict[str, Any]:
        """What the cache key hashes: file content for files, name/config/split for datasets."""
        d = asdict(self)
        if self.is_hf:
            name, _ = self.hf_name_config()
            if Path(name).exists():  # local stand-in folder: hash its files
                d["content"] = _hash_tree(Path(name))
        else:
            from neuronmoe.utils.io import sha256_file

            d["spec"] = str(Path(self.spec).resolve())
            d["content"] = sha256_file(self.spec)
        return d


def _hash_tree(root: Path) -> str:
    from neuronmoe.utils.io import sha256_file

    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() if p != root else b"")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def read_documents(src: Source, stats: dict[str, int] | None = None, long_text: bool = False) -> Iterator[Any]:
    """Yield the ``text`` of a source's documents, at most ``max_samples`` non-blank ones.

    Blank texts are skipped (counted in ``stats["blank_documents"]``); a record without a string
    ``text`` field is an error naming the file and line (or the dataset row). Lines are read in bounded
    memory; with ``long_text`` a text over 1 MiB of a jsonl line comes as a
    :class:`~neuronmoe.utils.longtext.FileText` (read in chunks), else as a string.
    """
    from neuronmoe.utils.longtext import FileText

    n = 0
    cap = src.max_samples
    for where, text in _iter_texts(src):
        if cap is not None and n >= cap:
            return
        if not isinstance(text, (str, FileText)):
            raise InputError(f"{where}: the {src.text_field!r} field is {type(text).__name__}, not text")
        if text.blank if isinstance(text, FileText) else (not text or text.isspace()):
            if stats is not None:
                stats["blank_documents"] = stats.get("blank_documents", 0) + 1
            continue
        n += 1
        yield text if long_text or isinstance(text, str) else text.read()


def _iter_texts(src: Source) -> Iterator[tuple[str, Any]]:
    """``(where, value of the text field)`` per record."""
    if src.is_hf:
        import datasets

        name, config = src.hf_name_config()
        try:
            ds = datasets.load_dataset(name, config, split=src.split, streaming=True)
        except Exception as e:  # noqa: BLE001 - surface as a clear input error
            raise InputError(f"data source {src.spec}: cannot open dataset ({type(e).__name__}: {e})") from None
        for i, row in enumerate(ds):
            if src.text_field not in row:
                raise InputError(f"data source {src.spec}: rows have no {src.text_field!r} field (fields: {sorted(row)})")
            yield f"data source {src.spec} row {i}", row[src.text_field]
        return
    for i, obj in iter_jsonl(src.spec, long_text=True):
        if src.text_field not in obj:
            raise InputError(f"{src.spec}:{i}: expected an object with a {src.text_field!r} field")
        yield f"{src.spec}:{i}", obj[src.text_field]


def pack(
    token_lists: Iterable[Sequence[int]], flags: Iterable[int], cutoff_len: int, eos_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents (each + EOS), cut into ``cutoff_len`` blocks; flags follow tokens.

    Returns ``input_ids`` int64 ``[N, cutoff_len]`` and ``lang_flags`` int8 ``[N, cutoff_len]``;
    the incomplete tail is dropped.
    """
    if cutoff_len < 2:
        raise ConfigError(f"cutoff_len must be >= 2, got {cutoff_len}")
    ids: list[int] = []
    fl: list[int] = []
    for toks, flag in zip(token_lists, flags):
        toks = list(toks)
        if eos_id is not None:
            toks.append(eos_id)
        ids.extend(toks)
        fl.extend([flag] * len(toks))
    n = len(ids) // cutoff_len
    a = np.asarray(ids[: n * cutoff_len], dtype=np.int64).reshape(n, cutoff_len)
    f = np.asarray(fl[: n * cutoff_len], dtype=np.int8).reshape(n, cutoff_len)
    return a, f


@dataclass
class PackedData:
    """Packed blocks: ``input_ids`` ``[N, cutoff_len]`` (uint16/uint32, memory-mapped) and ``lang_flags`` (int8)."""

    input_ids: np.ndarray
    lang_flags: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # the cache entry the arrays map (None: private files, already unlinked)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def cache_key(sources: Sequence[Source], tokenizer_fp: str, cutoff_len: int, seed: int,
              max_blocks: int | None = None) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "sources": [s.identity() for s in sources],
        "tokenizer": tokenizer_fp,
        "cutoff_len": cutoff_len,
        "seed": seed,
        "max_blocks": max_blocks,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    from neuronmoe.models.registry import cache_root

    return Path(cache_root()) / "tokenized"


def token_budget(cfg: dict[str, Any], world_size: int = 1) -> int | None:
    """Training tokens to pack: the config's ``max_tokens`` (``auto``: what the run will see).

    ``auto`` = ``max_steps x per_device_train_batch_size x gradient_accumulation_steps x
    world_size x cutoff_len`` (Table 7: 15,000 x 32 x 1024 = 491.5M tokens) when ``max_steps > 0``,
    else everything; ``all`` / ``null`` = everything; a number = that many tokens (whole blocks).
    """
    v = cfg.get("max_tokens")
    if v is None or v == "all":
        return None
    if v == "auto":
        if cfg["max_steps"] <= 0:
            return None
        return (int(cfg["max_steps"]) * int(cfg["per_device_train_batch_size"]) * int(cfg["gradient_accumulation_steps"])
                * int(world_size) * int(cfg["cutoff_len"]))
    return int(v)


def _open_entry(entry: Path, key: str | None = None) -> PackedData:
    """Map a finished cache entry; ValueError says what is wrong with it."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except FileNotFoundError:
        raise ValueError("no meta.json (an interrupted build)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable meta.json ({e})") from None
    if meta.get("format") != CACHE_FORMAT or (key is not None and meta.get("key") != key):
        raise ValueError(f"format {meta.get('format')} / key {meta.get('key')} (expected {CACHE_FORMAT} / {key})")
    n, t = int(meta["counts"]["blocks"]), int(meta["cutoff_len"])
    dtype = np.dtype(meta["storage_dtype"])
    arrays = []
    for name, dt in (("input_ids.bin", dtype), ("lang_flags.bin", np.dtype(np.int8))):
        f = entry / name
        size = f.stat().st_size if f.is_file() else -1
        if size != n * t * dt.itemsize:
            raise ValueError(f"{name} holds {size} bytes, expected {n} blocks x {t} x {dt.itemsize}")
        arrays.append(np.memmap(f, dtype=dt, mode="r", shape=(n, t)))
    return PackedData(arrays[0], arrays[1], meta, entry)


def _build_entry(entry: Path, work_root: Path, key: str, job: PackJob) -> None:
    """Build the cache entry ``entry`` (under a temporary name, renamed when complete)."""
    from neuronmoe.training.packing import build_blocks, source_documents
    from neuronmoe.utils.io import atomic_dir, atomic_write_json

    sources, cutoff_len, max_blocks = job.sources, job.cutoff_len, job.max_blocks
    read = functools.partial(read_documents, long_text=True)
    docs = [source_documents(s, work_root, read, job.progress) for s in sources]
    with atomic_dir(entry, overwrite=True) as tmp:
        res = build_blocks(job, docs, tmp, work_root)
        per_source = []
        tok_per_lang: dict[str, int] = {}
        for s, d, u in zip(sources, docs, res.meta["per_source"]):
            per_source.append({"spec": s.spec, "lang": s.lang, "flag": s.flag, "max_samples": s.max_samples,
                               "documents": d.info["documents"], "blank_documents": d.info.get("blank_documents", 0),
                               **u})
            tok_per_lang[s.lang] = tok_per_lang.get(s.lang, 0) + u["tokens_used"]
        blocks = res.blocks
        if blocks == 0:
            n_tok = sum(tok_per_lang.values())
            raise InputError(
                f"the training set is empty after packing: {sum(d.info['documents'] for d in docs)} documents hold "
                f"{n_tok} tokens, fewer than one block of cutoff_len={cutoff_len}; add data or lower cutoff_len"
            )
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "tokenizer_fingerprint": job.tok_fp,
            "cutoff_len": cutoff_len,
            "seed": job.seed,
            "max_tokens": None if max_blocks is None else max_blocks * cutoff_len,
            "storage_dtype": res.meta["storage_dtype"],
            "segments": res.meta["segments"],
            "sources": per_source,
            "counts": {
                "documents": int(sum(u["documents_used"] for u in res.meta["per_source"])),
                "documents_available": int(sum(d.info["documents"] for d in docs)),
                "tokens": int(sum(tok_per_lang.values())),
                "tokens_per_lang": tok_per_lang,
                "blocks": blocks,
                "packed_tokens": blocks * cutoff_len,
                "old_token_fraction": res.meta["old_tokens"] / (blocks * cutoff_len),
                "complete": res.meta["complete"],
            },
        }
        atomic_write_json(tmp / "meta.json", meta)


@contextlib.contextmanager
def _entry_lock(cdir: Path, key: str) -> Iterator[None]:
    """Hold ``<cdir>/<key>.lock``: one process builds an entry, the others wait (no collective barrier)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(cdir / f"{key}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        log.info("tokenized data %s: waiting for another process that builds it", cdir / key)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_packed(sources: Sequence[Source], tokenizer: Any, cutoff_len: int, seed: int,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True, max_tokens: int | None = None,
                 **run: Any) -> PackedData:
    """Read, shuffle, tokenize and pack ``sources``; map the cached blocks when the key matches.

    ``max_tokens``: pack only the first ``ceil(max_tokens / cutoff_len)`` blocks (the documents
    after them are never tokenized). ``use_cache=False`` builds privately (nothing is reused or
    kept: the files are unlinked once mapped). ``run``: how it runs, not what it builds (not in the cache key):
    ``num_proc`` tokenizing processes (default: :func:`~neuronmoe.training.packing.default_num_proc` for large
    segments, this process for small ones) and ``progress`` bars (default on).
    """
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    unknown = sorted(set(run) - {"num_proc", "progress"})
    if unknown:
        raise TypeError(f"build_packed(): unexpected argument(s) {', '.join(unknown)}")
    if not sources:
        raise ConfigError("no training data sources given")
    if cutoff_len < 2:
        raise ConfigError(f"cutoff_len must be >= 2, got {cutoff_len}")
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"max_tokens must be >= 1 or unset, got {max_tokens}")
    for s in sources:
        s.check()
    tok_fp = tokenizer_fingerprint(tokenizer)
    max_blocks = None if max_tokens is None else -(-int(max_tokens) // cutoff_len)
    key = cache_key(sources, tok_fp, cutoff_len, seed, max_blocks)
    job = PackJob(sources, tokenizer, tok_fp, cutoff_len, seed, max_blocks, run.get("num_proc"), run.get("progress", True))
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if use_cache and not _writable(cdir):
        log.warning("tokenized data cache %s is not writable; building a private copy", cdir)
        use_cache = False
    return _cached(cdir, key, job) if use_cache else _build_private(key, job)


def _writable(cdir: Path) -> bool:
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        return os.access(cdir, os.W_OK)
    except OSError:
        return False


def _cached(cdir: Path, key: str, job: PackJob) -> PackedData:
    """The cache entry ``key`` under ``cdir``: mapped when complete and readable, else (re)built under its lock."""
    entry = cdir / key
    with _entry_lock(cdir, key):
        if entry.exists():
            try:
                data = _open_entry(entry, key)
                log.info("tokenized data: cache hit %s (%d blocks)", entry, len(data))
                data.meta = {**data.meta, "cache": str(entry), "cache_hit": True}
                return data
            except (ValueError, OSError) as e:
                log.warning("tokenized data cache %s: %s; rebuilding it", entry, e)
                shutil.rmtree(entry, ignore_errors=True)
        for stale in cdir.glob(f".{key}.*.tmp"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        _build_entry(entry, cdir, key, job)
        data = _open_entry(entry, key)
    data.meta = {**data.meta, "cache": str(entry), "cache_hit": False}
    return data


def _build_private(key: str, job: PackJob) -> PackedData:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="neuronmoe-packed-"))
    try:
        _build_entry(root / key, root, key, job)
        data = _open_entry(root / key, key)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # mapped files stay readable until unmapped
    data.folder = None
    data.meta = {**data.meta, "cache": None, "cache_hit": False}
    return data


class PackedDataset:
    """Map-style dataset (torch-compatible) over packed blocks; items are int64 copies of one block.

    Pickles as the cache entry's path (spawned DataLoader workers map the same files).
    """

    def __init__(self, data: PackedData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": np.array(self.data.input_ids[i], dtype=np.int64),
                "lang_flags": np.array(self.data.lang_flags[i], dtype=np.int8)}  # copies: writable, unmapped

    def __getstate__(self) -> dict[str, Any]:
        d = self.data
        if d.folder is not None and (d.folder / "meta.json").exists():
            return {"folder": str(d.folder), "meta": d.meta}
        return {"data": PackedData(np.asarray(d.input_ids), np.asarray(d.lang_flags), d.meta, None)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "data" in state:
            self.data = state["data"]
        else:
            data = _open_entry(Path(state["folder"]))
            data.meta = state["meta"]
            self.data = data


class PackedCollator:
    """Stack (padding right when lengths differ) input_ids, attention_mask, labels, lang_flags.

    Labels are ``input_ids`` with ``-100`` on padding; padding flags are 0.
    """

    def __init__(self, pad_token_id: int = 0, label_pad: int = -100):
        self.pad_token_id = pad_token_id
        self.label_pad = label_pad

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not features:
            raise ValueError("empty batch")
        T = max(len(f["input_ids"]) for f in features)
        B = len(features)
        ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), self.label_pad, dtype=torch.long)
        flags = torch.zeros((B, T), dtype=torch.long)
        for b, f in enumerate(features):
            x = torch.as_tensor(np.asarray(f["input_ids"]), dtype=torch.long)
            n = x.numel()
            ids[b, :n] = x
            mask[b, :n] = 1
            labels[b, :n] = x if "labels" not in f else torch.as_tensor(np.asarray(f["labels"]), dtype=torch.long)
            if "lang_flags" in f:
                flags[b, :n] = torch.as_tensor(np.asarray(f["lang_flags"]), dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "lang_flags": flags}
