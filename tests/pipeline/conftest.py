"""Fixtures for the pipeline tests: a fake stage runner that writes each stage's completion marker."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.builders import write_allocation
from support.replicas import fast_replica_loading  # noqa: F401  (the evaluation tests' fixture)


class FakeRunner:
    """Stands in for ``subprocess.call``: records the commands, writes the marker the stage would write.

    ``fail_at``: stage subcommand + run name (e.g. ``"train:neuronmoe-s1"``) that exits 1 once.
    """

    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)
        self.calls: list[list[str]] = []
        self.fail_at: str | None = None

    @staticmethod
    def _opt(cmd, flag):
        return cmd[cmd.index(flag) + 1] if flag in cmd else None

    def __call__(self, cmd: list[str]) -> int:
        argv = cmd[cmd.index("neuronmoe") + 1:]
        sub = argv[0]
        key = f"{sub}:{self._opt(argv, '--run') or self._opt(argv, '--run-name') or self._opt(argv, '--name') or ''}"
        if self.fail_at == key:
            self.fail_at = None
            return 1
        self.calls.append(argv)
        o = self.out
        n = len(self.calls)
        if sub == "prepare-data":
            self._write(o / "data/manifest.json", {"n": n})
        elif sub == "neurons":
            self._write(o / "neurons/manifest.json", {"n": n})
            self._write(o / "neurons/counts.json", {"languages": ["en", "el"], "num_layers": 3,
                                                     "per_layer": {"en": [5, 1, 4], "el": [2, 0, 6]}})
        elif sub == "similarity":
            self._write(o / "similarity/manifest.json", {"n": n})
            self._alloc("layermoe", [3, 2, 3], "similarity")
        elif sub == "allocate":
            name = self._opt(argv, "--name")
            self._alloc(name, [2, 1, 3] if name == "neuronmoe" else [2, 1, 1], self._opt(argv, "--mode"),
                        neurons=(o / "neurons/manifest.json").read_text())
        elif sub == "train":
            run = self._opt(argv, "--run-name")
            d = o / "train" / run
            self._write(d / "adapter/adapter_config.json", {})
            (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "lm_loss": 3.0 / s, "aux_loss": 1.0 + 0.1 / s}) + "\n"
                                                     for s in (1, 2, 3)))
            self._write(d / "manifest.json", {"n": n})
        elif sub == "evaluate":
            run = self._opt(argv, "--run-name")
            self._eval_run(o / "eval" / run, run)
            self._write(o / "eval" / run / "manifest.json", {"n": n})
        elif sub == "analyze-experts":
            self._write(o / "analysis/expert_ap.json", {"target": "el", "threshold": 0.9, "experts": [
                {"layer": 0, "expert": "base", "expert_index": 0, "ratio_pct": {"el": 0.5}},
                {"layer": 0, "expert": "exp_0", "expert_index": 1, "ratio_pct": {"el": 1.5}}]})
            (o / "analysis/expert_ap_el.md").write_text("| L | Expert | Total | High-AP | Ratio (%) |\n| 0 | exp_0 | 160 | 3 | 1.88 |\n")
            self._write(o / "analysis/manifest.json", {"n": n})
        elif sub == "figures":
            self._write(o / "figures/manifest.json", {"n": n})
            (o / "figures/expert_heatmap.png").write_bytes(b"png")
        return 0

    #: items right out of 200 (UDHR cloze) and nats per byte on the held-out documents, per run
    EVAL = {"dense": (60, 1.00), "layermoe-s1": (82, 0.97), "neuronmoe-en-s1": (76, 0.99), "neuronmoe-s1": (80, 0.96),
            "neuronmoe-s2": (84, 0.95)}

    def _eval_run(self, d: Path, run: str) -> None:
        """results.json + items/ as `neuronmoe evaluate --suite local --languages el` writes them."""
        import math

        right, nats = self.EVAL[run]
        n_items, n_docs = 200, 30
        cloze = [1.0 if i < right else 0.0 for i in range(n_items)]  # the same items; a better run gets more right
        nbytes = [400 + 7 * i for i in range(n_docs)]
        ll = [-nats * b * (1 + 0.01 * ((i * 7) % 5 - 2)) for i, b in enumerate(nbytes)]
        (d / "items").mkdir(parents=True, exist_ok=True)
        (d / "items" / "udhr_cloze__el.jsonl").write_text("".join(
            json.dumps({"task": "udhr_cloze_el", "doc_id": i, "doc_hash": f"c{i}", "acc": v}) + "\n" for i, v in enumerate(cloze)))
        (d / "items" / "heldout_ppl__el.jsonl").write_text("".join(
            json.dumps({"task": "heldout_ppl_el", "doc_id": i, "doc_hash": f"h{i}", "bits_per_byte": [x, b]}) + "\n"
            for i, (x, b) in enumerate(zip(ll, nbytes))))
        acc = right / n_items
        specs = [{"task": "udhr_cloze_el", "benchmark": "udhr_cloze", "lang": "el", "shots": 0, "metric": "acc",
                  "label": "UDHR-cloze", "lower_is_better": False},
                 {"task": "heldout_ppl_el", "benchmark": "heldout_ppl", "lang": "el", "shots": 0, "metric": "bits_per_byte",
                  "label": "Held-out BPB", "lower_is_better": True}]
        self._write(d / "results.json", {
            "results": {"udhr_cloze_el": {"acc,none": acc, "acc_stderr,none": math.sqrt(acc * (1 - acc) / (n_items - 1))},
                        "heldout_ppl_el": {"bits_per_byte,none": -sum(ll) / sum(nbytes) / math.log(2),
                                           "bits_per_byte_stderr,none": "N/A"}},
            "neuronmoe": {"label": run, "tasks": specs, "complete": True,
                          "cells": {"udhr_cloze/el": {"status": "done", "items": "items/udhr_cloze__el.jsonl"},
                                    "heldout_ppl/el": {"status": "done", "items": "items/heldout_ppl__el.jsonl"}}}})

    def _alloc(self, name, epl, mode, **extra):
        write_allocation(self.out, epl, name=name, mode=mode, added_params=1000 * (sum(epl) - len(epl)), **extra)

    @staticmethod
    def _write(path: Path, obj):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    def subcommands(self):
        return [c[0] + (":" + (self._opt(c, "--run") or self._opt(c, "--run-name") or self._opt(c, "--name") or "")) for c in self.calls]


@pytest.fixture
def fake_runner(tmp_path):
    return FakeRunner(tmp_path / "out")
