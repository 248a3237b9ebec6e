"""Fixtures for the evaluation tests: a small $OUTPUT_DIR with data/udhr and data/heldout."""
from __future__ import annotations

from pathlib import Path

import pytest
from evalfixtures import make_paragraphs, write_jsonl


@pytest.fixture
def data_root(tmp_path) -> Path:
    """$OUTPUT_DIR with data/udhr/{en,el}.jsonl and data/heldout/{en,el}.jsonl in the prepare-data format."""
    for lang in ("en", "el"):
        write_jsonl(tmp_path / "data" / "udhr" / f"{lang}.jsonl", make_paragraphs(lang))
        held = [{"text": p["text"]} for p in make_paragraphs(lang, n=6, seed=99)]
        write_jsonl(tmp_path / "data" / "heldout" / f"{lang}.jsonl", held)
    return tmp_path


@pytest.fixture(scope="module")
def fast_replica_loading():
    """Test speed only: the replicas never change during a session, so each (folder, config) is
    read once (``datasets.load_dataset`` memoised) and README metadata is parsed by PyYAML's C
    safe loader. lm-eval still calls ``datasets.load_dataset`` for every task it builds."""
    import datasets
    import yaml

    mp = pytest.MonkeyPatch()
    if getattr(yaml, "__with_libyaml__", False):
        mp.setattr(yaml, "safe_load", lambda stream: yaml.load(stream, Loader=yaml.CSafeLoader))
    real = datasets.load_dataset
    memo: dict = {}

    def load_dataset(path=None, name=None, **kwargs):
        if not (path and (Path(str(path)) / "replica.json").is_file()):
            return real(path=path, name=name, **kwargs)
        key = (str(path), name, repr(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = real(path=path, name=name, **kwargs)
        return memo[key]

    mp.setattr(datasets, "load_dataset", load_dataset)
    yield memo
    mp.undo()
