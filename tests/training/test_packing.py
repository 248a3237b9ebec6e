"""Streaming packer: same blocks as the in-memory reference, budget, cache entries, ranks, bad input."""
from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from train_helpers import write_jsonl

from neuronmoe.testing import byte_tokenizer
from neuronmoe.training import packing
from neuronmoe.training.data import (
    NEW,
    OLD,
    PackedDataset,
    Source,
    build_packed,
    pack,
    read_documents,
    token_budget,
)
from neuronmoe.training.packing import BlockWriter, seeded_permutation, with_eos


def reference(sources, tok, cutoff, seed):
    """The in-memory packer this module replaced: a list of all documents, shuffled, tokenized, packed."""
    docs = [(t, s.flag) for s in sources for t in read_documents(s)]
    random.Random(seed).shuffle(docs)
    enc = tok([d[0] for d in docs], add_special_tokens=False)["input_ids"]
    return pack(enc, [d[1] for d in docs], cutoff, tok.eos_token_id)


def _docs(prefix, n, rng=None):
    rng = rng or random.Random(prefix)
    return [f"{prefix} document {i} " + "xyz " * rng.randint(0, 30) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("seed", [0, 42, 12345])
def test_permutation_is_random_shuffle(n, seed):
    ref = list(range(n))
    random.Random(seed).shuffle(ref)
    p = seeded_permutation(n, seed)
    assert p.dtype == np.uint32 and p.tolist() == ref


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.tuples(st.lists(st.integers(3, 60000), min_size=0, max_size=30), st.sampled_from([0, 1])),
                  min_size=1, max_size=20),
    cutoff=st.integers(2, 17),
    split=st.integers(1, 6),
    max_blocks=st.one_of(st.none(), st.integers(1, 8)),
)
def test_block_writer_equals_pack(tmp_path_factory, docs, cutoff, split, max_blocks):
    """Documents fed in batches of any size give exactly the blocks of ``pack`` (or their prefix)."""
    folder = tmp_path_factory.mktemp("bw")
    ref_ids, ref_flags = pack([d[0] for d in docs], [d[1] for d in docs], cutoff, eos_id=2)
    w = BlockWriter(folder, cutoff, np.dtype(np.uint16), max_blocks)
    for i in range(0, len(docs), split):
        part = docs[i:i + split]
        lens = np.array([len(d[0]) for d in part])
        offs = np.concatenate([[0], np.cumsum(lens)])
        vals = np.array([t for d in part for t in d[0]], dtype=np.int64)
        stream, tl = with_eos(offs, vals, 2)
        w.add(stream, np.repeat(np.array([d[1] for d in part], dtype=np.int8), tl))
    n = w.close()
    want = len(ref_ids) if max_blocks is None else min(max_blocks, len(ref_ids))
    assert n == want
    ids = np.fromfile(folder / "input_ids.bin", dtype=np.uint16).reshape(-1, cutoff)
    flags = np.fromfile(folder / "lang_flags.bin", dtype=np.int8).reshape(-1, cutoff)
    assert np.array_equal(ids, ref_ids[:want]) and np.array_equal(flags, ref_flags[:want])


@pytest.fixture
def two_sources(tmp_path):
    new = write_jsonl(tmp_path / "el.jsonl", _docs("new", 120))
    old = write_jsonl(tmp_path / "en.jsonl", _docs("old", 150))
    return [Source(str(new), "el", NEW, max_samples=100), Source(str(old), "en", OLD)]


def test_streaming_blocks_equal_the_in_memory_packer(two_sources, tmp_path, monkeypatch):
    tok = byte_tokenizer()
    ref_ids, ref_flags = reference(two_sources, tok, 32, seed=5)
    one = build_packed(two_sources, tok, 32, seed=5, cache_dir=tmp_path / "c1", progress=False)
    assert one.input_ids.dtype == np.uint16 and one.meta["storage_dtype"] == "uint16"
    assert np.array_equal(one.input_ids, ref_ids) and np.array_equal(one.lang_flags, ref_flags)
    # many small segments, each tokenized by 2 worker processes: the same bytes
    monkeypatch.setattr(packing, "SEGMENT_BYTES", 2000)
    monkeypatch.setattr(packing, "INLINE_BYTES", 0)
    many = build_packed(two_sources, tok, 32, seed=5, cache_dir=tmp_path / "c2", num_proc=2, progress=False)
    assert many.meta["counts"]["blocks"] == len(ref_ids)
    assert (tmp_path / "c1" / one.meta["key"] / "input_ids.bin").read_bytes() == \
        (tmp_path / "c2" / many.meta["key"] / "input_ids.bin").read_bytes()
    assert len(list((tmp_path / "c2" / "segments").glob("*_of_00002.arrow"))) > 2
    c = many.meta["counts"]
    assert c["documents"] == c["documents_available"] == 250 and c["complete"] is True
    assert c["old_token_fraction"] == pytest.approx(float(ref_flags.mean()))
    assert {s["lang"]: s["documents"] for s in many.meta["sources"]} == {"el": 100, "en": 150}


def test_mapped_texts_read_every_document_of_the_stores(tmp_path):
    """``MappedTexts.take`` (pread at the stores' offsets) returns exactly the documents written by ``DocWriter``,
    in any order, across several stores, after pickling; ``sizes`` and ``chunks`` agree with them; a long text
    (``chunks()``) is stored as the string it reads."""
    import pickle

    from neuronmoe.utils.longtext import StrText

    rng = np.random.default_rng(0)
    words = ["Καλημέρα", "κόσμε", "hello", "日本語", "x", "😀", ""]
    paths, texts = [], []
    for k in range(2):
        path = tmp_path / f"docs{k}.txt"
        w = packing.DocWriter(path)
        part = [" ".join(rng.choice(words, size=int(rng.integers(0, 9)))) for _ in range(50)]
        for i, t in enumerate(part):
            w.add(StrText(t) if i % 7 == 3 else t)
        w.close()
        paths.append(path)
        texts += part
    mt = packing.MappedTexts(paths)
    assert len(mt) == len(texts) == 100
    order = rng.permutation(100)
    assert mt.take(order) == [texts[i] for i in order]
    assert mt.sizes(order).tolist() == [len(texts[i].encode()) for i in order]
    assert all("".join(mt.chunks(i)) == texts[i] for i in range(100))
    again = pickle.loads(pickle.dumps(mt))
    assert again.take(order[:10]) == [texts[i] for i in order[:10]]


def test_default_tokenizing_processes_by_cores(two_sources, tmp_path, monkeypatch):
    """Below 4 cores one process (the tokenizer's own threads), else min(8, cores) workers; either way
    the same blocks."""
    assert [packing.default_num_proc(c) for c in (1, 2, 3, 4, 6, 16)] == [None, None, None, 4, 6, 8]
    monkeypatch.setattr(packing, "SEGMENT_BYTES", 1 << 20)  # one segment
    monkeypatch.setattr(packing, "INLINE_BYTES", 0)
    tok = byte_tokenizer()
    out = {}
    for cores in (2, 4):
        monkeypatch.setattr(packing, "_cores", lambda cores=cores: cores)
        d = build_packed(two_sources, tok, 32, seed=3, cache_dir=tmp_path / str(cores), progress=False)
        out[cores] = (tmp_path / str(cores) / d.meta["key"] / "input_ids.bin").read_bytes()
        workers = list((tmp_path / str(cores) / "segments").glob("*_of_0000*.arrow"))
        assert (len(workers) > 0) == (cores == 4), cores  # worker shard files only with 4 cores
    assert out[2] == out[4]


def test_token_budget_packs_a_prefix_and_stops_tokenizing(two_sources, tmp_path, monkeypatch):
    tok = byte_tokenizer()
    full = build_packed(two_sources, tok, 16, seed=1, cache_dir=tmp_path / "c", progress=False)
    monkeypatch.setattr(packing, "SEGMENT_BYTES", 1500)
    part = build_packed(two_sources, tok, 16, seed=1, cache_dir=tmp_path / "c", max_tokens=16 * 40 - 5, progress=False)
    assert len(part) == 40 and part.meta["max_tokens"] == 640
    assert np.array_equal(part.input_ids, full.input_ids[:40])
    assert np.array_equal(part.lang_flags, full.lang_flags[:40])
    c = part.meta["counts"]
    assert c["complete"] is False and c["documents"] < c["documents_available"]
    assert c["tokens"] >= 640 and sum(c["tokens_per_lang"].values()) == c["tokens"]
    seg = part.meta["segments"]
    assert 0 < seg["tokenized"] < seg["planned"]  # later segments were never tokenized
    # a budget above the data: everything, like no budget
    big = build_packed(two_sources, tok, 16, seed=1, cache_dir=tmp_path / "c", max_tokens=10**9, progress=False)
    assert np.array_equal(big.input_ids, full.input_ids) and big.meta["counts"]["complete"] is True


def test_budget_of_the_config():
    cfg = {"max_tokens": "auto", "max_steps": 15000, "per_device_train_batch_size": 32,
           "gradient_accumulation_steps": 1, "cutoff_len": 1024}
    assert token_budget(cfg) == 491_520_000  # Table 7's tokens seen
    assert token_budget({**cfg, "per_device_train_batch_size": 4}, world_size=8) == 491_520_000
    assert token_budget({**cfg, "max_steps": -1}) is None
    assert token_budget({**cfg, "max_tokens": "all"}) is None and token_budget({**cfg, "max_tokens": None}) is None
    assert token_budget({**cfg, "max_tokens": 1000}) == 1000


def test_cache_hit_maps_and_bad_entries_are_rebuilt(two_sources, tmp_path, caplog):
    tok = byte_tokenizer()
    first = build_packed(two_sources, tok, 16, seed=0, cache_dir=tmp_path / "c", progress=False)
    entry = tmp_path / "c" / first.meta["key"]
    again = build_packed(two_sources, tok, 16, seed=0, cache_dir=tmp_path / "c", progress=False)
    assert again.meta["cache_hit"] is True and isinstance(again.input_ids, np.memmap)
    assert np.array_equal(first.input_ids, again.input_ids)
    # an entry left by an interrupted write: truncated ids, then no meta.json, then a stale temp folder
    good = (entry / "input_ids.bin").read_bytes()
    for damage in ("truncate", "no-meta"):
        if damage == "truncate":
            (entry / "input_ids.bin").write_bytes(good[:-7])
        else:
            (entry / "meta.json").unlink()
        (tmp_path / "c" / f".{first.meta['key']}.x1.tmp").mkdir()
        with caplog.at_level("WARNING"):
            rebuilt = build_packed(two_sources, tok, 16, seed=0, cache_dir=tmp_path / "c", progress=False)
        assert rebuilt.meta["cache_hit"] is False and "rebuilding" in caplog.text
        assert (entry / "input_ids.bin").read_bytes() == good
        assert not list((tmp_path / "c").glob(".*.tmp"))
        caplog.clear()


def test_private_build_leaves_no_files(two_sources, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tok = byte_tokenizer()
    d = build_packed(two_sources, tok, 16, seed=0, use_cache=False, progress=False)
    assert d.meta["cache"] is None and len(d) > 0
    assert not list((tmp_path / "tmp").iterdir())
    assert np.array_equal(d.input_ids, reference(two_sources, tok, 16, 0)[0])  # still readable


def test_dataset_pickles_as_a_path(two_sources, tmp_path):
    tok = byte_tokenizer()
    d = build_packed(two_sources, tok, 16, seed=0, cache_dir=tmp_path / "c", progress=False)
    ds = PackedDataset(d)
    blob = pickle.dumps(ds)
    assert len(blob) < 4096  # not the blocks
    back = pickle.loads(blob)
    assert len(back) == len(ds)
    item = back[3]
    assert item["input_ids"].dtype == np.int64 and np.array_equal(item["input_ids"], d.input_ids[3])
    assert np.array_equal(item["lang_flags"], d.lang_flags[3])


def _rank(args):
    specs, cache, q = args
    tok = byte_tokenizer()
    d = build_packed([Source(*s) for s in specs], tok, 16, seed=3, cache_dir=cache, progress=False)
    q.put((d.meta["cache_hit"], np.asarray(d.input_ids).tobytes()))


def test_ranks_build_once_and_map_the_same_blocks(two_sources, tmp_path):
    specs = [(s.spec, s.lang, s.flag, s.max_samples) for s in two_sources]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=((specs, str(tmp_path / "c"), q),)) for _ in range(3)]
    for p in procs:
        p.start()
    out = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(hit for hit, _ in out) == [False, True, True]  # one process built, two waited and mapped
    assert len({b for _, b in out}) == 1


def test_bad_input_is_a_clear_error(tmp_path):
    tok = byte_tokenizer()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"text": " "}) + "\n")
    good = write_jsonl(tmp_path / "good.jsonl", _docs("good", 20))
    for f, msg in ((empty, "empty.jsonl \\(el\\) is empty"), (blank, "blank.jsonl \\(el\\) is empty: no document with text \\(1 blank\\)")):
        with pytest.raises(ValueError, match=msg):  # one empty source among good ones is an error, not a silent gap
            build_packed([Source(str(good), "en", OLD), Source(str(f), "el", NEW)], tok, 8, seed=0, use_cache=False)
    null = tmp_path / "null.jsonl"
    null.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": None}) + "\n")
    with pytest.raises(ValueError, match="null.jsonl:2: the 'text' field is NoneType"):
        build_packed([Source(str(null), "el", NEW)], tok, 8, seed=0, use_cache=False)

    class Wide:  # reports a small vocabulary but produces an id beyond 16 bits
        eos_token_id = 2

        def __len__(self):
            return 300

        def get_vocab(self):
            return tok.get_vocab()

        special_tokens_map = tok.special_tokens_map

        def __call__(self, texts, **kw):
            return {"input_ids": [[5, 70000, 6] for _ in texts]}

    with pytest.raises(ValueError, match="token id 70000 does not fit the uint16"):
        build_packed([Source(str(good), "el", NEW)], Wide(), 8, seed=0, cache_dir=tmp_path / "c", progress=False)
    assert not [p for p in (tmp_path / "c").iterdir() if p.suffix not in (".lock",) and p.name not in ("docs", "segments")]


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    tok = byte_tokenizer()

    class Big:
        eos_token_id = 100_000

        def __len__(self):
            return 100_001

        def get_vocab(self):
            return {**tok.get_vocab(), "<big>": 100_000}

        special_tokens_map = tok.special_tokens_map

        def __call__(self, texts, **kw):
            return {"input_ids": [[70_000 + len(t) % 7, 5] for t in texts]}

    f = write_jsonl(tmp_path / "el.jsonl", _docs("a", 30))
    d = build_packed([Source(str(f), "el", NEW)], Big(), 6, seed=0, cache_dir=tmp_path / "c", progress=False)
    assert d.input_ids.dtype == np.uint32 and d.meta["storage_dtype"] == "uint32"
    assert int(d.input_ids.max()) == 100_000 and int(d.input_ids.min()) == 5


def test_stage1_auto_budget_packs_what_the_run_sees(out_dir, tiny_dir, cache_dir):
    """``max_tokens: auto`` packs max_steps x batch x cutoff tokens: one epoch is exactly max_steps."""
    from train_helpers import TINY_SETS, run_training

    res = run_training(1, model=str(tiny_dir), output_dir=str(out_dir), allocation="tiny", profile="cpu",
                       sets=TINY_SETS + ["max_tokens=auto", "max_samples=null"], cache_dir=str(cache_dir))
    packed = json.loads((out_dir / "train" / "tiny-s1" / "data_manifest.json").read_text())["packed"]
    assert packed["max_tokens"] == 6 * 4 * 32 and packed["counts"]["blocks"] == 6 * 4
    assert packed["counts"]["complete"] is False and res["global_step"] == 6
    rows = [json.loads(x) for x in (out_dir / "train" / "tiny-s1" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["epoch"] for r in rows if "epoch" in r) == pytest.approx(1.0)


def test_damaged_segment_of_an_interrupted_build_is_tokenized_again(two_sources, tmp_path, monkeypatch, caplog):
    """A build killed after some segments: the entry is missing, a segment file is cut short. The rebuild
    rewrites that segment (a short table would silently drop documents) and gives the same bytes."""
    tok = byte_tokenizer()
    monkeypatch.setattr(packing, "SEGMENT_BYTES", 2000)
    monkeypatch.setattr(packing, "INLINE_BYTES", 0)
    first = build_packed(two_sources, tok, 16, seed=2, cache_dir=tmp_path / "c", num_proc=2, progress=False)
    good = (first.folder / "input_ids.bin").read_bytes()
    import shutil

    shutil.rmtree(first.folder)  # the kill came before the entry was renamed into place
    shards = sorted((tmp_path / "c" / "segments").glob("*_of_00002.arrow"))
    assert len(shards) > 4
    cut, gone, boundary = shards[1], shards[2], shards[3]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # cut inside a record batch
    gone.unlink()  # never written
    rows = packing.arrow_rows(boundary)
    import pyarrow as pa

    with pa.OSFile(str(boundary), "rb") as fh:  # a well-formed stream that ends early: readable, but short
        table = pa.ipc.open_stream(fh).read_all()
    assert table.num_rows == rows > 1
    with pa.OSFile(str(boundary), "wb") as fh, pa.ipc.new_stream(fh, table.schema) as w:
        w.write_table(table.slice(0, rows // 2))
    assert packing.arrow_rows(boundary) == rows // 2
    with caplog.at_level("WARNING"):
        again = build_packed(two_sources, tok, 16, seed=2, cache_dir=tmp_path / "c", num_proc=2, progress=False)
    assert (again.folder / "input_ids.bin").read_bytes() == good
    assert again.meta["counts"] == first.meta["counts"]
    assert cut.name in caplog.text and boundary.name in caplog.text and "tokenizing it again" in caplog.text


def test_record_without_text_field_is_an_error(tmp_path):
    f = tmp_path / "el.jsonl"
    f.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"content": "no text field"}) + "\n")
    with pytest.raises(ValueError, match="el.jsonl:2: expected an object with a 'text' field"):
        build_packed([Source(str(f), "el", NEW)], byte_tokenizer(), 8, seed=0, use_cache=False, progress=False)


def test_same_blocks_as_the_former_packer_with_the_embedded_tokenizer(tmp_path):
    """The embedded default's shape (SmolLM2 tokenizer, the bundled Greek and English text, cutoff 128):
    stage 1 (every Greek document) and stage 2 (400 + 400 replay documents) pack exactly the blocks of the
    in-memory packer this module replaced (``reference``), so the training losses stay the same for a seed."""
    from train_helpers import corpus_docs

    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    el = write_jsonl(tmp_path / "el.jsonl", corpus_docs("el"))
    en = write_jsonl(tmp_path / "en.jsonl", corpus_docs("en"))
    stage1 = [Source(str(el), "el", NEW)]
    stage2 = [Source(str(el), "el", NEW, max_samples=400), Source(str(en), "en", OLD, max_samples=400)]
    for sources in (stage1, stage2):
        ref_ids, ref_flags = reference(sources, tok, 128, seed=42)
        got = build_packed(sources, tok, 128, seed=42, cache_dir=tmp_path / "c", progress=False)
        assert got.input_ids.dtype == np.uint16 and len(got) == len(ref_ids) > 100
        assert np.array_equal(got.input_ids, ref_ids) and np.array_equal(got.lang_flags, ref_flags)
        assert got.meta["counts"]["old_token_fraction"] == pytest.approx(float(ref_flags.mean()))
