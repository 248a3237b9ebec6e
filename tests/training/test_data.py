"""Packing with language flags, mixing, caching, the HF path and the collator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from train_helpers import write_jsonl

from neuronmoe.testing import byte_tokenizer
from neuronmoe.training.data import NEW, OLD, PackedCollator, Source, build_packed, pack


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.tuples(st.lists(st.integers(3, 200), min_size=0, max_size=20), st.sampled_from([0, 1])),
                  min_size=1, max_size=12),
    cutoff=st.integers(2, 16),
)
def test_pack_keeps_every_token_with_its_flag(docs, cutoff):
    ids, flags = pack([d[0] for d in docs], [d[1] for d in docs], cutoff, eos_id=2)
    stream, fstream = [], []
    for toks, f in docs:
        stream += list(toks) + [2]
        fstream += [f] * (len(toks) + 1)
    n = len(stream) // cutoff
    assert ids.shape == flags.shape == (n, cutoff)
    assert ids.reshape(-1).tolist() == stream[: n * cutoff]
    assert flags.reshape(-1).tolist() == fstream[: n * cutoff]


def test_pack_rejects_tiny_cutoff():
    with pytest.raises(ValueError, match="cutoff_len"):
        pack([[5, 6]], [0], 1, 2)


def _docs(prefix, n):
    return [f"{prefix} document number {i} " + "x" * (i % 7) for i in range(n)]


def test_mix_caps_shuffles_and_flags(tmp_path):
    tok = byte_tokenizer()
    new = write_jsonl(tmp_path / "el.jsonl", _docs("new", 50))
    old = write_jsonl(tmp_path / "en.jsonl", _docs("old", 80))
    srcs = [Source(str(new), "el", NEW, max_samples=20), Source(str(old), "en", OLD, max_samples=30)]
    a = build_packed(srcs, tok, 16, seed=1, use_cache=False)
    counts = {s["lang"]: s["documents"] for s in a.meta["sources"]}
    assert counts == {"el": 20, "en": 30}
    assert set(np.unique(a.lang_flags)) == {0, 1}
    # flags follow text: every block position flagged old decodes from an "old ..." document
    text_old = tok.decode(a.input_ids[a.lang_flags == 1][:40].tolist())
    assert "new" not in text_old
    # same seed -> same order; another seed -> another order
    b = build_packed(srcs, tok, 16, seed=1, use_cache=False)
    c = build_packed(srcs, tok, 16, seed=2, use_cache=False)
    assert np.array_equal(a.input_ids, b.input_ids)
    assert not np.array_equal(a.input_ids, c.input_ids)
    # the mixture is interleaved, not new-then-old
    first_half = a.lang_flags[: len(a) // 2]
    assert 0 < first_half.mean() < 1


def test_cache_hit_skips_tokenizing(tmp_path):
    tok = byte_tokenizer()
    f = write_jsonl(tmp_path / "el.jsonl", _docs("new", 30))
    srcs = [Source(str(f), "el", NEW)]
    first = build_packed(srcs, tok, 8, seed=0, cache_dir=tmp_path / "cache")
    assert first.meta["cache_hit"] is False

    class Exploding:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *a, **k):
            raise AssertionError("tokenized again despite the cache")

    again = build_packed(srcs, Exploding(), 8, seed=0, cache_dir=tmp_path / "cache")
    assert again.meta["cache_hit"] is True
    assert np.array_equal(first.input_ids, again.input_ids)
    other = build_packed(srcs, tok, 12, seed=0, cache_dir=tmp_path / "cache")  # new cutoff = new key
    assert other.meta["cache_hit"] is False and other.input_ids.shape[1] == 12
    # a changed file changes the key
    write_jsonl(f, _docs("changed", 30))
    assert build_packed(srcs, tok, 8, seed=0, cache_dir=tmp_path / "cache").meta["cache_hit"] is False


def test_hf_source_on_a_local_standin(tmp_path):
    """``hf:NAME`` streams through datasets.load_dataset; a local dataset folder stands in for the hub."""
    tok = byte_tokenizer()
    docs = _docs("hub", 25)
    ds_dir = tmp_path / "my_dataset"
    write_jsonl(ds_dir / "train.jsonl", docs)
    local = write_jsonl(tmp_path / "same.jsonl", docs)
    via_hf = build_packed([Source(f"hf:{ds_dir}", "el", NEW, max_samples=10)], tok, 8, seed=3, use_cache=False)
    via_file = build_packed([Source(str(local), "el", NEW, max_samples=10)], tok, 8, seed=3, use_cache=False)
    assert via_hf.meta["sources"][0]["documents"] == 10
    assert np.array_equal(via_hf.input_ids, via_file.input_ids)
    with pytest.raises(ValueError, match="hf:NAME"):
        Source("hf:", "el", NEW).check()


def test_empty_training_set_is_a_clear_error(tmp_path):
    tok = byte_tokenizer()
    f = tmp_path / "el.jsonl"
    f.write_text(json.dumps({"text": "  "}) + "\n" + json.dumps({"text": ""}) + "\n")
    with pytest.raises(ValueError, match="empty"):
        build_packed([Source(str(f), "el", NEW)], tok, 8, seed=0, use_cache=False)
    short = write_jsonl(tmp_path / "short.jsonl", ["ab"])
    with pytest.raises(ValueError, match="fewer than one block"):
        build_packed([Source(str(short), "el", NEW)], tok, 64, seed=0, use_cache=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "x"}\n')
    with pytest.raises(ValueError, match="'text' field"):
        build_packed([Source(str(bad), "el", NEW)], tok, 8, seed=0, use_cache=False)
    with pytest.raises(FileNotFoundError):
        build_packed([Source(str(tmp_path / "missing.jsonl"), "el", NEW)], tok, 8, seed=0, use_cache=False)


def test_collator_pads_and_masks():
    col = PackedCollator(pad_token_id=0)
    batch = col([
        {"input_ids": np.array([5, 6, 7]), "lang_flags": np.array([1, 1, 0], dtype=np.int8)},
        {"input_ids": np.array([8, 9]), "lang_flags": np.array([1, 1], dtype=np.int8)},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, 9, -100]]
    assert batch["lang_flags"].tolist() == [[1, 1, 0], [1, 1, 0]]
    assert all(v.dtype.is_floating_point is False for v in batch.values())
