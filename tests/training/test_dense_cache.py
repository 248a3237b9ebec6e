"""The base model's held-out perplexity is computed once per output folder and reused only for the same inputs."""
from __future__ import annotations

import json
import math

from neuronmoe.training.dense_cache import cached_dense


def _setup(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    heldout = tmp_path / "el.jsonl"
    heldout.write_text('{"text": "καλημέρα"}\n')
    return model, heldout, tmp_path / "train" / "dense_heldout.json"


class Counter:
    def __init__(self, value: float) -> None:
        self.calls, self.value = 0, value

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def test_second_run_reads_the_stored_value(tmp_path):
    model, heldout, cache = _setup(tmp_path)
    kw = {"block_len": 256, "max_tokens": 4096}
    first, second = Counter(19.5), Counter(99.0)
    assert cached_dense(cache, str(model), heldout, kw, first) == 19.5
    assert cached_dense(cache, str(model), heldout, kw, second) == 19.5
    assert (first.calls, second.calls) == (1, 0)
    assert not list(cache.parent.glob("dense_heldout.json.lock"))  # the lock is a hidden file


def test_changed_inputs_are_computed_again(tmp_path):
    model, heldout, cache = _setup(tmp_path)
    kw = {"block_len": 256, "max_tokens": 4096}
    cached_dense(cache, str(model), heldout, kw, Counter(19.5))
    other_settings = Counter(18.0)
    assert cached_dense(cache, str(model), heldout, {**kw, "max_tokens": 2048}, other_settings) == 18.0
    heldout.write_text('{"text": "άλλο κείμενο"}\n')
    other_text = Counter(17.0)
    assert cached_dense(cache, str(model), heldout, kw, other_text) == 17.0
    (model / "config.json").write_text('{"a": 2}')
    other_model = Counter(16.0)
    assert cached_dense(cache, str(model), heldout, kw, other_model) == 16.0
    assert (other_settings.calls, other_text.calls, other_model.calls) == (1, 1, 1)
    assert len(json.loads(cache.read_text())) == 4


def test_damaged_cache_and_non_finite_values_are_not_trusted(tmp_path):
    model, heldout, cache = _setup(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_text("[1, 2")
    kw = {"block_len": 256}
    assert math.isnan(cached_dense(cache, str(model), heldout, kw, Counter(float("nan"))))  # returned, never stored
    assert not cache.read_text().startswith("{")  # nothing written for a NaN
    assert cached_dense(cache, str(model), heldout, kw, Counter(12.0)) == 12.0
    assert cached_dense(cache, str(model), heldout, kw, Counter(13.0)) == 12.0
