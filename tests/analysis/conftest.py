"""Fixtures for the expert analysis: samples in two scripts and a routing capture emulating a MoE.

``forced_capture`` emulates a freshly upcycled MoE (every expert a copy of the dense MLP) whose router is
forced per token: every non-padding token goes to the base (expert 0); non-ASCII tokens (Greek letters)
also go to expert 1 (``exp_0``) and ASCII tokens (letters, spaces, punctuation) to expert 2 (``exp_1``).
Because the experts are copies, an expert's activations for a token are the dense MLP's.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

EN = [
    "the cat sat on the mat today", "a dog runs in the park", "we like green apples and tea",
    "rain falls on the old town", "she reads a long book at night", "my friend writes short letters",
    "birds sing in the early morning", "the river is cold in winter",
]
EL = [
    "η γάτα κάθεται στο χαλί σήμερα", "ένας σκύλος τρέχει στο πάρκο", "μας αρέσουν τα πράσινα μήλα",
    "η βροχή πέφτει στην παλιά πόλη", "διαβάζει ένα μεγάλο βιβλίο", "ο φίλος μου γράφει γράμματα",
    "τα πουλιά τραγουδούν το πρωί", "το ποτάμι είναι κρύο τον χειμώνα",
]


@pytest.fixture
def samples_dir(tmp_path) -> Path:
    d = tmp_path / "data" / "samples"
    d.mkdir(parents=True)
    for lang, texts in (("en", EN), ("el", EL)):
        with open(d / f"{lang}.jsonl", "w", encoding="utf-8") as fh:
            for t in texts:
                fh.write(json.dumps({"text": t, "lang": lang, "n_tokens": len(t.encode())}, ensure_ascii=False) + "\n")
    return d


@pytest.fixture
def sklearn_ap():
    """AP per unit and language through sklearn: the reference for the project's vectorised AP."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    def ap(scores, labels):
        scores, labels = np.asarray(scores), np.asarray(labels)
        L = int(labels.max()) + 1
        return np.array([[average_precision_score(labels == l, scores[:, u]) for l in range(L)]
                         for u in range(scores.shape[1])])

    return ap


class _Cap:
    def __init__(self):
        self.layers = {}


def make_forced_capture(tokenizer, layers):
    """A ``capture(model)`` factory emulating ``neuronmoe.moe.capture_routing`` with forced routing."""
    from neuronmoe.models.arch import decoder_layers, get_arch, mlp_module

    ascii_ids = set(tokenizer("".join(chr(i) for i in range(32, 127)), add_special_tokens=False)["input_ids"])

    @contextlib.contextmanager
    def capture(model):
        spec = get_arch(model)
        cap, store, handles = _Cap(), {}, []
        ids_box = {}

        def pre(_m, args, kwargs):
            ids_box["ids"] = kwargs.get("input_ids", args[0] if args else None)

        handles.append(model.register_forward_pre_hook(pre, with_kwargs=True))
        for li in layers:
            mlp = mlp_module(decoder_layers(model)[li], spec)
            store[li] = {}
            for key, proj in zip(("gate", "up", "down"), spec.mlp_proj):
                handles.append(getattr(mlp, proj).register_forward_hook(
                    lambda _m, _i, out, _li=li, _k=key: store[_li].__setitem__(_k, out.detach())))
        try:
            yield cap
        finally:
            for h in handles:
                h.remove()
        ids = ids_box["ids"]
        flat = ids.reshape(-1)
        is_ascii = torch.tensor([int(t) in ascii_ids for t in flat.tolist()])
        groups = {0: torch.arange(flat.numel()), 1: torch.nonzero(~is_ascii).reshape(-1),
                  2: torch.nonzero(is_ascii).reshape(-1)}
        for li in layers:
            acts = {}
            for e, idx in groups.items():
                acts[e] = {"token_index": idx}
                for k in ("gate", "up", "down"):
                    t = store[li][k]
                    acts[e][k] = t.reshape(-1, t.shape[-1])[idx]
            cap.layers[li] = {"expert_ids": None, "weights": None, "acts": acts}

    return capture


@pytest.fixture
def forced_capture():
    """``forced_capture(tokenizer, moe_layers)`` -> a capture factory (see the module docstring)."""
    return make_forced_capture
