"""Deduplication keys in a compact set: 64-bit hashes in one numpy array.

A Python ``set`` of 8-byte ``bytes`` keys costs about 70-100 bytes per entry (object header,
hash slot, resize slack): 5-6 GB for the ~60M sentences of 2B tokens. :class:`KeySet` stores
the same keys as ``uint64`` in an open-addressing table (linear probing, load factor at most
1/2): 8 bytes per slot, 16-32 bytes per key including the free slots, plus a transient copy
while it doubles. Batches are inserted with vectorised numpy operations.

Collision rate: keys are the first 8 bytes of a BLAKE2b digest (:func:`neuronmoe.data.text.dedup_key`),
so two different sentences share a key with probability 2**-64. Among ``n`` distinct sentences
the expected number of sentences wrongly dropped as duplicates is about ``n**2 / 2**65``:
3e-6 for 10M sentences, 3e-4 for 100M (the key 0 is stored as 1, which doubles the rate for
those two keys only).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from neuronmoe.data.text import dedup_keys

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads any key set over the slots


def sentence_keys(sentences: Iterable[str]) -> np.ndarray:
    """``uint64`` dedup keys of ``sentences`` (the bytes of :func:`~neuronmoe.data.text.dedup_key`, little-endian)."""
    blob = dedup_keys(list(sentences))
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)


class KeySet:
    """A set of ``uint64`` keys; :meth:`add` inserts a batch and says which keys were new."""

    def __init__(self, capacity: int = 1 << 12):
        bits = max(4, int(2 * max(1, capacity) - 1).bit_length())
        self._table = np.zeros(1 << bits, dtype=np.uint64)
        self._bits = bits
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._table.nbytes)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((keys * _GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)

    @staticmethod
    def _clean(keys: Iterable[int] | np.ndarray) -> np.ndarray:
        k = np.asarray(keys, dtype=np.uint64).ravel()
        return np.where(k == 0, np.uint64(1), k)  # 0 marks a free slot

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which ``keys`` are in the table."""
        t, mask = self._table, (1 << self._bits) - 1
        slots = self._home(keys)
        found = np.zeros(len(keys), dtype=bool)
        pending = np.arange(len(keys))
        while pending.size:
            v = t[slots[pending]]
            hit = v == keys[pending]
            found[pending[hit]] = True
            pending = pending[~(hit | (v == 0))]
            slots[pending] = (slots[pending] + 1) & mask
        return found

    def _insert(self, keys: np.ndarray) -> None:
        """Insert distinct keys that are not in the table yet."""
        t, mask = self._table, (1 << self._bits) - 1
        slots = self._home(keys)
        pending = np.arange(len(keys))
        while pending.size:
            busy = t[slots[pending]] != 0
            while busy.any():  # walk every key to the next free slot
                slots[pending[busy]] = (slots[pending[busy]] + 1) & mask
                busy = t[slots[pending]] != 0
            s = slots[pending]
            t[s] = keys[pending]  # keys sharing a free slot: one of them lands there
            pending = pending[t[s] != keys[pending]]  # the others walk on
        self._n += len(keys)

    def _reserve(self, n_new: int) -> None:
        need = self._n + n_new
        if 2 * need <= len(self._table):
            return
        old = self._table[self._table != 0]
        bits = self._bits
        while (1 << bits) < 2 * need:
            bits += 1
        self._table = np.zeros(1 << bits, dtype=np.uint64)
        self._bits, self._n = bits, 0
        self._insert(old)

    def add(self, keys: Iterable[int] | np.ndarray) -> np.ndarray:
        """Insert ``keys`` in order; returns a mask of the keys that were new.

        Same result as adding one key at a time: a key already in the set, or repeated
        earlier in the batch, is not new.
        """
        k = self._clean(keys)
        is_new = np.zeros(len(k), dtype=bool)
        if not len(k):
            return is_new
        uniq, first = np.unique(k, return_index=True)
        absent = ~self._find(uniq)
        fresh = uniq[absent]
        self._reserve(len(fresh))
        self._insert(fresh)
        is_new[first[absent]] = True
        return is_new

    def __contains__(self, key: int) -> bool:
        return bool(self._find(self._clean([key]))[0])

    def contains(self, keys: Iterable[int] | np.ndarray) -> np.ndarray:
        return self._find(self._clean(keys))
