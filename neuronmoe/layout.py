"""The output tree, as code: which folder and file each stage writes under ``$OUTPUT_DIR``, which file marks
it complete, and the one rule for every user-given name that becomes a path.

Stages, the pipeline, the paper plan and the test fixtures build their paths here (``Layout(out).adapter(run)``)
instead of joining strings; ``docs/CONTRACTS.md``'s tree is :func:`render_tree` (a test keeps them equal).

Names (:func:`check_name`): run names, allocation names, experiment names and labels that become a folder or
file name are one path component: not empty, not ``.``/``..``, no separator, no leading dash or dot, no control
character. ``--overwrite`` deletes a folder only through :func:`remove_run_folder`: inside its stage folder, not
a symlink, and holding this project's manifest or lock (never the output root, never another stage's folder).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from neuronmoe.errors import ConfigError, StateError

MANIFEST = "manifest.json"
#: files whose presence marks a folder as one of this project's run folders (besides a manifest or lock)
RUN_FILES = (MANIFEST, "resolved_config.yaml", "metrics.jsonl", "results.json", "adapter", "cells",
             "data_manifest.json", "allocation.json")

#: (path under $OUTPUT_DIR, the command that writes it, what it holds): the tree of docs/CONTRACTS.md
TREE: list[tuple[str, str, str]] = [
    ("data/", "prepare-data", "prepared text; complete when data/manifest.json exists"),
    ("data/samples/<lang>.jsonl", "prepare-data", '{"text", "lang", "n_tokens"}: neuron-analysis sentences'),
    ("data/train/<lang>.jsonl", "prepare-data", '{"text"}: training documents of the new languages'),
    ("data/heldout/<lang>.jsonl", "prepare-data", '{"text"}: held-out documents (no text shared with the rest)'),
    ("data/replay/<lang>.jsonl", "prepare-data", '{"text"}: replay documents of the old languages (stage 2)'),
    ("data/udhr/<lang>.jsonl", "prepare-data", '{"id", "article", "text"}: UDHR paragraphs (evaluation only)'),
    ("data/manifest.json", "prepare-data", "sources, seed, counts, tokenizer fingerprint, sha256 of every file"),
    ("neurons/", "neurons", "language-specific units; complete when neurons/manifest.json exists"),
    ("neurons/activations/", "neurons", "pooled activations per layer (fp16 memmaps) + progress file"),
    ("neurons/ap.npy", "neurons", "float32 [units, languages]: the AP of every unit"),
    ("neurons/units.npz", "neurons", "layer, module_id, index of every unit; module_names"),
    ("neurons/selected_<lang>.csv", "neurons", "layer,module,index,ap: the top-K units of a language"),
    ("neurons/counts_per_layer.csv", "neurons", "layer,<lang>...: selected units per layer (Table 6)"),
    ("neurons/counts_per_layer_module.csv", "neurons", "layer,module,<lang>...: per projection"),
    ("neurons/counts.json", "neurons", "languages, num_layers, per_layer, per_module"),
    ("neurons/manifest.json", "neurons", "settings, inputs, sha256 of every file"),
    ("similarity/", "similarity", "LayerMoE's layer similarities; complete when similarity/manifest.json exists"),
    ("similarity/similarity.npz", "similarity", "sim[num_layers, L, L], languages"),
    ("similarity/scores.csv", "similarity", "layer,score"),
    ("similarity/manifest.json", "similarity", "settings, inputs, sha256 of every file"),
    ("allocation/<name>.json", "allocate", "experts_per_layer, total_experts, scores, model fingerprint, ... "
     "(complete when it exists)"),
    ("allocation/<name>.env", "allocate", "ADA_MOE_NUM_EXPERTS_LIST=... (the published scripts' format)"),
    ("allocation/<name>.stability.json", "allocate", "--bootstrap/--sample-sizes/--sensitivity: how much the "
     "allocation changes with other sentences, fewer sentences, other thresholds"),
    ("train/dense_heldout.json", "train", "the base model's held-out perplexity per (model files, held-out file, "
     "scoring settings): computed by the first run, read by the others"),
    ("train/<run>/", "train", "one training run; complete when train/<run>/manifest.json exists"),
    ("train/<run>/adapter/", "train", "adapter_config.json, adapter_model.safetensors, README.md"),
    ("train/<run>/checkpoint-<step>/", "train", "HF Trainer checkpoints (--resume)"),
    ("train/<run>/metrics.jsonl", "train", "one JSON object per logging step"),
    ("train/<run>/resolved_config.yaml", "train", "the resolved training settings"),
    ("train/<run>/allocation.json", "train", "a copy of the allocation trained"),
    ("train/<run>/data_manifest.json", "train", "the packed data: files, sha256, tokens"),
    ("train/<run>/manifest.json", "train", "settings, batch contract, inputs, perplexities, sha256"),
    ("eval/<run>/", "evaluate", "one evaluation; complete when eval/<run>/manifest.json exists"),
    ("eval/<run>/results.json", "evaluate", "lm-eval results (rewritten after every cell)"),
    ("eval/<run>/cells/<bench>__<lang>.json", "evaluate", "one cell's result and fingerprint"),
    ("eval/<run>/items/<bench>__<lang>.jsonl", "evaluate", "per-item scores (paired tests)"),
    ("eval/<run>/manifest.json", "evaluate", "settings, inputs, sha256"),
    ("eval/tasks/", "evaluate", "the local suite's lm-eval task YAMLs and items"),
    ("eval/table.md", "report", "Table 1 from the evaluation runs (and table.csv)"),
    ("analysis/", "analyze-experts", "per-expert AP (Tables 4, 10); complete when analysis/manifest.json exists"),
    ("figures/", "figures", "PNG + PDF; complete when figures/manifest.json exists"),
    ("pipeline/", "pipeline", "state/<stage>.json fingerprints, started/, timings.json, work/<stage>.json"),
    ("pipeline/allocation_gate.json", "allocation-gate", "paper run: each computed allocation vs the paper's, the decision"),
    ("report.md", "pipeline", "the miniature Table 1 with every figure"),
]


def check_name(value: object, what: str) -> str:
    """``value`` if it can be one path component; else a :class:`ConfigError` naming ``what`` (the flag, field
    or variable). The one rule for run, allocation, experiment and label names that become paths."""
    name = "" if value is None else str(value)
    problem = None
    if not name.strip():
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is not a name"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator"
    elif name.startswith("-"):
        problem = "starts with a dash"
    elif name.startswith("."):
        problem = "starts with a dot"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains a control character"
    elif len(name.encode("utf-8")) > 200:
        problem = "is longer than 200 bytes"
    if problem:
        raise ConfigError(f"{what} {name!r}: {problem}; a name is one folder or file name such as neuronmoe-s1 "
                          f"(letters, digits, '-', '_', '.'), never a path")
    return name


def check_optional_name(value: object, what: str) -> str | None:
    """:func:`check_name` for a name that may be unset (None or empty)."""
    return None if value in (None, "") else check_name(value, what)


@dataclass(frozen=True)
class Layout:
    """The paths of one output root. Every method that takes a user-given name checks it (:func:`check_name`)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    # ---- data ---------------------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    def data_file(self, split: str, lang: str, data_dir: str | os.PathLike | None = None) -> Path:
        """``data/<split>/<lang>.jsonl`` (``split``: samples, train, heldout, replay, udhr)."""
        return Path(data_dir or self.data) / split / f"{lang}.jsonl"

    # ---- neurons, similarity, allocation -----------------------------------------------------------------
    @property
    def neurons(self) -> Path:
        return self.root / "neurons"

    @property
    def similarity(self) -> Path:
        return self.root / "similarity"

    @property
    def allocations(self) -> Path:
        return self.root / "allocation"

    def allocation(self, name: str, what: str = "--name") -> Path:
        return self.allocations / f"{check_name(name, what)}.json"

    def stability(self, name: str, what: str = "--name") -> Path:
        """``allocation/<name>.stability.json`` (``neuronmoe allocate --bootstrap N``)."""
        return self.allocations / f"{check_name(name, what)}.stability.json"

    # ---- training ---------------------------------------------------------------------------------------------
    @property
    def train(self) -> Path:
        return self.root / "train"

    def train_run(self, run: str, what: str = "--run-name") -> Path:
        return self.train / check_name(run, what)

    @property
    def dense_heldout(self) -> Path:
        return self.train / "dense_heldout.json"

    def adapter(self, run: str, what: str = "--run-name") -> Path:
        return self.train_run(run, what) / "adapter"

    # ---- evaluation, analysis, figures, report ------------------------------------------------------------
    @property
    def eval(self) -> Path:
        return self.root / "eval"

    def eval_run(self, run: str, what: str = "--run-name") -> Path:
        return self.eval / check_name(run, what)

    def results(self, run: str) -> Path:
        return self.eval_run(run) / "results.json"

    @property
    def eval_tasks(self) -> Path:
        return self.eval / "tasks"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    def allocation_gate(self) -> Path:
        """``pipeline/allocation_gate.json``: each computed allocation against the paper's, and the decision."""
        return self.pipeline / "allocation_gate.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    # ---- completion markers -----------------------------------------------------------------------------
    def marker(self, stage: str, name: str | None = None) -> Path:
        """The file whose existence marks a stage complete: its ``manifest.json`` (an allocation: its JSON)."""
        folders = {"data": self.data, "neurons": self.neurons, "similarity": self.similarity,
                   "analysis": self.analysis, "figures": self.figures}
        if stage in folders:
            return folders[stage] / MANIFEST
        if stage == "allocation":
            return self.allocation(str(name))
        if stage == "train":
            return self.train_run(str(name)) / MANIFEST
        if stage == "eval":
            return self.eval_run(str(name)) / MANIFEST
        raise KeyError(f"no completion marker for stage {stage!r}")

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root, POSIX style (what the pipeline records)."""
        return Path(path).relative_to(self.root).as_posix()


def check_removable(folder: str | os.PathLike, stage_dir: str | os.PathLike, flag: str = "--overwrite") -> bool:
    """True when ``folder`` exists and :func:`remove_run_folder` may delete it: a direct child of ``stage_dir``
    (both resolved), not a symlink, a folder holding this project's manifest, lock record or a known run file
    (or nothing). False when there is nothing to delete; anything else is a :class:`StateError` (checked before
    a stage starts, so that ``--overwrite`` is refused before anything runs)."""
    folder, stage_dir = Path(folder), Path(stage_dir)
    if not folder.exists() and not folder.is_symlink():
        return False
    if folder.is_symlink():
        raise StateError(f"{flag}: {folder} is a symbolic link; nothing deleted (remove it yourself if it is "
                         f"meant to go)")
    parent = folder.resolve().parent
    if parent != stage_dir.resolve() or folder.resolve() == stage_dir.resolve():
        raise StateError(f"{flag}: {folder} is not a run folder directly inside {stage_dir}; nothing deleted")
    if not folder.is_dir():
        raise StateError(f"{flag}: {folder} is a file, not a run folder; nothing deleted")
    from neuronmoe.utils.lock import lock_paths

    ours = any((folder / k).exists() for k in RUN_FILES) or any(p.exists() for p in lock_paths(folder))
    if not ours and any(folder.iterdir()):
        raise StateError(f"{flag}: {folder} holds no manifest or lock of this project; nothing deleted "
                         f"(remove it yourself if it is meant to go)")
    return True


def remove_run_folder(folder: str | os.PathLike, stage_dir: str | os.PathLike, flag: str = "--overwrite") -> None:
    """Delete ``folder`` for ``--overwrite``, only when :func:`check_removable` allows it (a run folder of this
    project directly inside ``stage_dir``, not a symlink); anything else is a :class:`StateError` and nothing
    is deleted."""
    if check_removable(folder, stage_dir, flag):
        shutil.rmtree(folder)


def render_tree() -> str:
    """The output tree of docs/CONTRACTS.md, from :data:`TREE`."""
    width = max(len(p) for p, _, _ in TREE) + 2
    lines = ["$OUTPUT_DIR/"]
    for path, command, what in TREE:
        lines.append(f"  {path.ljust(width)}{what}  [{command}]")
    return "\n".join(lines) + "\n"
