"""Training data: read documents, tokenize, pack into fixed-length blocks with language flags.

A *source* is one stream of documents with a language flag:

* a local ``.jsonl`` file whose lines are objects with a ``"text"`` field, or
* ``hf:NAME[:CONFIG]``: a Hugging Face dataset read with ``datasets.load_dataset(NAME, CONFIG,
  split=..., streaming=True)`` (NAME may be a hub id or a local dataset folder).

Every source is capped at ``max_samples`` documents (the first ones of the file/stream); the
documents of all sources are shuffled together with ``seed``, each is tokenized and followed by
EOS, and the token stream is cut into ``cutoff_len`` blocks (the incomplete tail is dropped).
Every token keeps the flag of its document: ``1`` = old language (replay, LPR target expert 0),
``0`` = new language. Packed blocks are cached under ``$NEURONMOE_CACHE/tokenized/<key>/`` where
the key hashes the sources (file sha256 / dataset id), the tokenizer fingerprint, the cutoff,
the caps and the seed, so a rerun reuses them without tokenizing again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from neuronmoe.utils.io import iter_jsonl

log = logging.getLogger(__name__)

OLD, NEW = 1, 0
CACHE_FORMAT = 1


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
            raise ValueError(f"data source {self.spec!r}: expected hf:NAME[:CONFIG]")
        name, _, config = rest.partition(":")
        return name, (config or None)

    def check(self) -> None:
        if self.flag not in (OLD, NEW):
            raise ValueError(f"data source {self.spec}: flag must be 0 (new) or 1 (old), got {self.flag}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data source {self.spec}: max_samples must be >= 1 or unset, got {self.max_samples}")
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


def read_documents(src: Source) -> Iterator[str]:
    """Yield the non-empty ``text`` of a source's documents, at most ``max_samples``."""
    n = 0
    cap = src.max_samples
    for text in _iter_texts(src):
        if cap is not None and n >= cap:
            return
        if not isinstance(text, str) or not text.strip():
            continue
        n += 1
        yield text


def _iter_texts(src: Source) -> Iterator[Any]:
    if src.is_hf:
        import datasets

        name, config = src.hf_name_config()
        try:
            ds = datasets.load_dataset(name, config, split=src.split, streaming=True)
        except Exception as e:  # noqa: BLE001 - surface as a clear input error
            raise ValueError(f"data source {src.spec}: cannot open dataset ({type(e).__name__}: {e})") from None
        for row in ds:
            if src.text_field not in row:
                raise ValueError(f"data source {src.spec}: rows have no {src.text_field!r} field (fields: {sorted(row)})")
            yield row[src.text_field]
        return
    for i, obj in iter_jsonl(src.spec):
        if src.text_field not in obj:
            raise ValueError(f"{src.spec}:{i}: expected an object with a {src.text_field!r} field")
        yield obj[src.text_field]


def pack(
    token_lists: Iterable[Sequence[int]], flags: Iterable[int], cutoff_len: int, eos_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents (each + EOS), cut into ``cutoff_len`` blocks; flags follow tokens.

    Returns ``input_ids`` int64 ``[N, cutoff_len]`` and ``lang_flags`` int8 ``[N, cutoff_len]``;
    the incomplete tail is dropped.
    """
    if cutoff_len < 2:
        raise ValueError(f"cutoff_len must be >= 2, got {cutoff_len}")
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
    input_ids: np.ndarray
    lang_flags: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def cache_key(sources: Sequence[Source], tokenizer_fp: str, cutoff_len: int, seed: int) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "sources": [s.identity() for s in sources],
        "tokenizer": tokenizer_fp,
        "cutoff_len": cutoff_len,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    from neuronmoe.models.registry import cache_root

    return Path(cache_root()) / "tokenized"


def build_packed(
    sources: Sequence[Source],
    tokenizer: Any,
    cutoff_len: int,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> PackedData:
    """Read, shuffle, tokenize and pack ``sources``; reuse the cache when the key matches."""
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.io import atomic_dir

    if not sources:
        raise ValueError("no training data sources given")
    for s in sources:
        s.check()
    tok_fp = tokenizer_fingerprint(tokenizer)
    key = cache_key(sources, tok_fp, cutoff_len, seed)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = cdir / key
    if use_cache and (entry / "meta.json").exists():
        meta = json.loads((entry / "meta.json").read_text())
        log.info("tokenized data: cache hit %s (%d blocks)", entry, meta["counts"]["blocks"])
        return PackedData(np.load(entry / "input_ids.npy"), np.load(entry / "lang_flags.npy"), {**meta, "cache": str(entry), "cache_hit": True})

    docs: list[tuple[str, int, str]] = []
    per_source: list[dict[str, Any]] = []
    for s in sources:
        n0 = len(docs)
        docs.extend((t, s.flag, s.lang) for t in read_documents(s))
        per_source.append({"spec": s.spec, "lang": s.lang, "flag": s.flag, "max_samples": s.max_samples, "documents": len(docs) - n0})
        if len(docs) == n0:
            log.warning("data source %s (%s): no documents", s.spec, s.lang)
    if not docs:
        raise ValueError("the training set is empty: the data sources hold no non-empty documents "
                         f"({', '.join(s.spec for s in sources)})")
    random.Random(seed).shuffle(docs)
    texts = [d[0] for d in docs]
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    ids, flags = pack(enc, [d[1] for d in docs], cutoff_len, eos)
    n_tokens = sum(len(e) + (eos is not None) for e in enc)
    if len(ids) == 0:
        raise ValueError(
            f"the training set is empty after packing: {len(docs)} documents hold {n_tokens} tokens, "
            f"fewer than one block of cutoff_len={cutoff_len}; add data or lower cutoff_len"
        )
    tok_per_lang: dict[str, int] = {}
    for e, d in zip(enc, docs):
        tok_per_lang[d[2]] = tok_per_lang.get(d[2], 0) + len(e) + (eos is not None)
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "tokenizer_fingerprint": tok_fp,
        "cutoff_len": cutoff_len,
        "seed": seed,
        "sources": per_source,
        "counts": {
            "documents": len(docs),
            "tokens": n_tokens,
            "tokens_per_lang": tok_per_lang,
            "blocks": int(len(ids)),
            "packed_tokens": int(ids.size),
            "old_token_fraction": float(flags.mean()),
        },
    }
    if use_cache:
        try:
            with atomic_dir(entry, overwrite=True) as tmp:
                np.save(tmp / "input_ids.npy", ids)
                np.save(tmp / "lang_flags.npy", flags)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        except OSError as e:  # a read-only cache must not stop training
            log.warning("could not write tokenized cache %s: %s", entry, e)
    return PackedData(ids, flags, {**meta, "cache": str(entry) if use_cache else None, "cache_hit": False})


class PackedDataset:
    """Map-style dataset (torch-compatible) over packed blocks."""

    def __init__(self, data: PackedData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.data.input_ids[i]
        return {"input_ids": ids, "lang_flags": self.data.lang_flags[i]}


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
