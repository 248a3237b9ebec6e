"""Multiple-choice options scored on one pass of their shared context give lm-eval's own numbers (its path is the
reference: ``share_context = False``), for dense models and MoE adapters, with options of different lengths, several
questions in one batch, a context shared by some requests only, and single-token contexts."""
from __future__ import annotations

import pytest

from neuronmoe.testing import byte_tokenizer, tiny_model

ITEMS = [
    ("The cat sat on the", [" mat", " floor and slept", " roof", " x"]),
    ("The dog ran to the", [" park", " sea and swam", " end"]),  # the same context length: batched with the cat
    ("Η γάτα κάθεται στο", [" χαλί", " πάτωμα και κοιμάται", " σπίτι"]),
    ("A single request", [" alone"]),
    ("", [" starts the text"]),
]


def _requests():
    from lm_eval.api.instance import Instance

    reqs = []
    for ctx, opts in ITEMS:
        for o in opts:
            reqs.append(Instance(request_type="loglikelihood", doc={}, arguments=(ctx, o), idx=len(reqs)))
    return reqs


def _scores(lm, share: bool):
    lm.share_context = share
    return lm.loglikelihood(_requests(), disable_tqdm=True)


def _moe_model():
    import torch
    from peft import get_peft_model

    from neuronmoe.moe import MoEConfig

    base = tiny_model("llama", seed=3)
    n = base.config.num_hidden_layers
    model = get_peft_model(base, MoEConfig(experts_per_layer=[3 if i % 2 == 0 else 1 for i in range(n)], top_k=2))
    torch.manual_seed(0)
    with torch.no_grad():  # new experts and routers away from their upcycled start, so routing matters
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    return model


@pytest.fixture(params=["one-length", "mixed"])
def batching(request, monkeypatch):
    """``mixed``: any left padding allowed, so contexts of different lengths share a batch (the masked path);
    returns the context lengths of every batch :func:`score_groups` ran."""
    from neuronmoe.evaluation import shared_context as sc

    if request.param == "mixed":
        monkeypatch.setattr(sc, "MAX_PAD", 100.0)
    seen: list[set[int]] = []
    orig = sc.score_groups

    def spy(model, groups, *a, **k):
        seen.append({len(ctx) for ctx, _ in groups})
        return orig(model, groups, *a, **k)

    monkeypatch.setattr(sc, "score_groups", spy)
    yield request.param, seen


def _check_batching(batching, batch_size):
    kind, seen = batching
    assert seen
    if kind == "mixed" and batch_size > 1:
        assert any(len(x) > 1 for x in seen)  # the left-padded path ran
    if kind == "one-length":
        assert all(len(x) == 1 for x in seen)  # these items: their lengths differ too much to share a batch


@pytest.mark.parametrize("kind", ["dense", "moe"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_shared_context_scores_equal_lm_eval(kind, batch_size, batching):
    from neuronmoe.evaluation.runner import make_lm

    model = tiny_model("llama", seed=1) if kind == "dense" else _moe_model()
    lm = make_lm(model, byte_tokenizer(), batch_size=batch_size)
    ref = _scores(lm, share=False)
    got = _scores(lm, share=True)
    _check_batching(batching, batch_size)
    assert len(got) == len(ref) == sum(len(o) for _, o in ITEMS)
    for (g, gg), (r, rg) in zip(got, ref):
        assert g == pytest.approx(r, rel=1e-5, abs=1e-4)
        assert gg == rg
    # the options differ (a broken pairing of scores to requests would show here)
    assert len({round(x, 3) for x, _ in got}) > len(ITEMS)


def test_shared_groups_selects_only_shared_contexts_that_fit():
    from neuronmoe.evaluation.shared_context import shared_groups

    reqs = [(None, [1, 2, 3], [4]), (None, [1, 2, 3], [5, 6]), (None, [9], [4]), (None, [9], [5]),
            (None, [7, 8], [1]), (None, [1, 2, 3], [7] * 10)]
    assert shared_groups(reqs, max_length=64) == [[0, 1, 5]]
    assert shared_groups(reqs, max_length=8) == [[0, 1]]  # 3 + 10 tokens > 8 + 1: lm-eval would cut it


def test_shared_context_runs_the_context_once():
    """The saving itself: fewer tokens through the model than lm-eval's path (counted by the forward hooks)."""
    import torch

    from neuronmoe.evaluation.runner import make_lm

    model = tiny_model("llama", seed=1)
    lm = make_lm(model, byte_tokenizer(), batch_size=8)
    seen = []
    def count(_m, a, k, _o):
        seen.append(int((k["input_ids"] if "input_ids" in k else a[0]).numel()))

    h = model.register_forward_hook(count, with_kwargs=True)
    try:
        _scores(lm, share=False)
        plain = sum(seen)
        seen.clear()
        _scores(lm, share=True)
        shared = sum(seen)
    finally:
        h.remove()
    assert shared < 0.75 * plain, (shared, plain)
    assert torch.is_tensor(next(model.parameters()))


DOCS = ["A held-out document, scored as text. " * 3, "Ένα δεύτερο κείμενο με λέξεις.", "short", "x" * 150]


@pytest.mark.parametrize("logit_tokens", [64, 4096])
def test_rolling_documents_equal_lm_eval_with_bounded_batches(logit_tokens, monkeypatch):
    """Held-out documents (several windows when longer than max_length) through the memory-bounded plain path."""
    from lm_eval.api.instance import Instance

    from neuronmoe.evaluation import shared_context
    from neuronmoe.evaluation.runner import make_lm

    monkeypatch.setattr(shared_context, "LOGIT_TOKENS", logit_tokens)
    model = tiny_model("llama", seed=2)
    lm = make_lm(model, byte_tokenizer(), batch_size=3, max_length=64)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={"text": d}, arguments=(d,), idx=i) for i, d in enumerate(DOCS)]
    lm.share_context = False
    ref = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    lm.share_context = True
    got = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    assert got == pytest.approx(ref, rel=1e-5, abs=1e-4)
    assert len(set(round(x, 2) for x in got)) == len(DOCS)


def test_plain_batches_respect_rows_and_the_logit_budget():
    from neuronmoe.evaluation.shared_context import _plain_batches

    wins = [([0] * n, c) for n, c in [(100, 100), (90, 90), (40, 5), (30, 5), (20, 20), (10, 2), (10, 2), (3, 1)]]
    order = sorted(range(len(wins)), key=lambda i: -len(wins[i][0]))
    batches = _plain_batches(wins, order, rows=3, logit_tokens=190)
    assert sorted(i for b in batches for i in b) == list(range(len(wins)))  # every request once
    for b in batches:
        width = max(len(wins[i][0]) for i in b)
        keep = max(width - len(wins[i][0]) + wins[i][1] for i in b)
        assert len(b) <= 3 and (len(b) == 1 or len(b) * keep <= 190)
    assert batches[0] == [0]  # 100 + 90 scored positions padded to 100 each: over the budget together


def test_shared_context_on_every_supported_architecture(arch, batching):
    """The key/value cache path on each architecture family (Gemma-3's sliding-window layers included), with one
    context length per batch and with left-padded contexts of several lengths."""
    from neuronmoe.evaluation.runner import make_lm

    lm = make_lm(tiny_model(arch, seed=4), byte_tokenizer(), batch_size=4)
    ref = _scores(lm, share=False)
    got = _scores(lm, share=True)
    _check_batching(batching, 4)
    for (g, gg), (r, rg) in zip(got, ref):
        assert g == pytest.approx(r, rel=1e-5, abs=1e-4) and gg == rg


def test_questions_are_batched_by_context_length_within_the_budgets():
    from neuronmoe.evaluation.shared_context import _group_batches, shared_groups

    reqs = []
    for ctx_len, n_opts in [(5, 4), (5, 4), (5, 4), (7, 4), (3, 2), (7, 3)]:
        ctx = list(range(100 + len(reqs), 100 + len(reqs) + ctx_len))
        reqs += [(None, ctx, [1] * (o + 1)) for o in range(n_opts)]
    groups = shared_groups(reqs, max_length=64)
    assert len(groups) == 6
    batches = _group_batches(groups, reqs, rows=8, logit_tokens=1000)
    lengths = [{len(reqs[groups[g][0]][1]) for g in b} for b in batches]
    assert all(len(x) == 1 for x in lengths)  # one context length per batch
    assert [next(iter(x)) for x in lengths] == [7, 5, 5, 3]  # longest first; 3 x 4 rows > 8: split
    assert sorted(g for b in batches for g in b) == list(range(6))
    assert all(sum(len(groups[g]) for g in b) <= 8 for b in batches)


def test_contexts_of_several_lengths_share_a_batch_while_the_padding_is_small():
    from neuronmoe.evaluation.shared_context import MAX_PAD, _group_batches, shared_groups

    reqs = []
    for ctx_len in (11, 11, 10, 3):
        ctx = list(range(100 + len(reqs), 100 + len(reqs) + ctx_len))
        reqs += [(None, ctx, [1, 2]), (None, ctx, [3])]
    groups = shared_groups(reqs, max_length=64)
    batches = _group_batches(groups, reqs, rows=8, logit_tokens=1000)
    # 11, 11, 10: 1 padded position of 29 real (the context minus its last token); + 3: 10 of 31 > MAX_PAD
    assert MAX_PAD == 0.25
    assert [[len(reqs[groups[g][0]][1]) for g in b] for b in batches] == [[11, 11, 10], [3]]
    assert _group_batches(groups, reqs, rows=8, logit_tokens=1000, max_pad=0.5) == [[0, 1, 2, 3]]
    assert _group_batches(groups, reqs, rows=8, logit_tokens=1000, max_pad=0.0) == [[0, 1], [2], [3]]
