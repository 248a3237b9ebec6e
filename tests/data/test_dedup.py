"""KeySet: the compact dedup set behaves like a Python set, in order, at any batch split."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronmoe.data.dedup import KeySet, sentence_keys
from neuronmoe.data.text import dedup_key


@settings(max_examples=80, deadline=None)
@given(batches=st.lists(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)), max_size=300), max_size=12))
def test_keyset_is_a_set_with_sequential_semantics(batches):
    ks, ref = KeySet(capacity=4), set()
    for b in batches:
        got = ks.add(np.array(b, dtype=np.uint64)).tolist()
        want = []
        for k in b:
            k = k or 1  # 0 is stored as 1 (documented)
            want.append(k not in ref)
            ref.add(k)
        assert got == want
        assert len(ks) == len(ref)
    probe = list(ref)[:50] + [12345678901234567]
    assert ks.contains(np.array(probe, dtype=np.uint64)).tolist() == [p in ref for p in probe]


def test_keyset_grows_and_stays_compact():
    rng = np.random.default_rng(0)
    ks = KeySet()
    keys = rng.integers(1, 2**64 - 1, size=200_000, dtype=np.uint64)
    for i in range(0, len(keys), 10_000):
        assert ks.add(keys[i:i + 10_000]).all()
    assert len(ks) == 200_000 and not ks.add(keys[:1000]).any()
    assert ks.nbytes <= 32 * len(ks)  # <= 32 bytes per key (load factor in (1/4, 1/2])


def test_sentence_keys_are_dedup_keys():
    sents = ["A sentence.", "a  SENTENCE.", "Άλλη πρόταση."]
    k = sentence_keys(sents)
    assert k.dtype == np.uint64 and k[0] == k[1] != k[2]
    assert k.tolist() == [int.from_bytes(dedup_key(s), "little") for s in sents]
