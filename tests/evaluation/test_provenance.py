"""Where every number comes from: model folders by content, the dataset commit of every cell (a moved dataset is
recomputed; the report refuses to mix commits), finished cells kept when their data cannot be reloaded, and
replicas laid out like the hub repositories (no ``configs:`` block where the real one has none)."""
from __future__ import annotations

import json
import shutil

import pytest

from neuronmoe.cli import main
from neuronmoe.utils.manifest import describe_files

SIZES = "cloze_items=6,heldout_docs=2,heldout_max_chars=200,cloze_prefix_words=6,cloze_suffix_words=2"
FAST = ["--device", "cpu", "--dtype", "float32", "--limit", "2"]


def _local(model, root, *extra):
    return main(["evaluate", "--model", str(model), "--output-dir", str(root), "--device", "cpu", "--dtype", "float32",
                 "--local-sizes", SIZES, "--languages", "en", "--run-name", "r", *extra])


def _counts(run):
    return json.loads((run / "manifest.json").read_text())["counts"]


def test_a_model_folder_is_fingerprinted_by_its_content_not_its_path(tiny_model_dir, data_root, tmp_path, capsys):
    from neuronmoe.testing import save_tiny_model

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model_dir, a)
    shutil.copytree(tiny_model_dir, b)
    assert _local(a, data_root) == 0
    run = data_root / "eval" / "r"
    # the same files in another folder: the same model, every cell reused
    assert _local(b, data_root) == 0
    assert _counts(run)["cells_run"] == 0 and _counts(run)["cells_reused"] == 2
    # other weights in the same folder: another model, refused without --overwrite (never silently reused)
    save_tiny_model(b, "llama", seed=5)
    capsys.readouterr()
    assert _local(b, data_root) == 2
    assert "were made with other inputs" in capsys.readouterr().err
    assert _local(b, data_root, "--overwrite") == 0 and _counts(run)["cells_run"] == 2


def _replica_run(model, root, replicas, *extra):
    return main(["evaluate", "--model", str(model), "--output-dir", str(root), *FAST, "--tasks", "arc_challenge,hellaswag",
                 "--dataset-replicas", str(replicas), "--run-name", "r", *extra])


def test_each_cell_records_its_dataset_commit_and_a_moved_dataset_is_recomputed(tiny_model_dir, data_root, tmp_path, capsys):
    from support.replicas import build_replicas

    reps = build_replicas(tmp_path / "reps")
    assert _replica_run(tiny_model_dir, data_root, reps) == 0
    run = data_root / "eval" / "r"
    cells = json.loads((run / "results.json").read_text())["neuronmoe"]["cells"]
    before = cells["hellaswag/-"]["dataset_revision"]
    digest = json.loads((reps / "Rowan__hellaswag" / "replica.json").read_text())["digest"]
    assert before["dataset"] == "Rowan/hellaswag" and before["revision"] == f"replica:{digest}"
    assert cells["arc_challenge/-"]["dataset_revision"]["dataset"] == "allenai/ai2_arc"
    old = tmp_path / "old"
    shutil.copytree(run, old)
    # the dataset moves to a new commit: the rerun recomputes that cell (no --overwrite needed), keeps the other
    mtime = (run / "cells" / "arc_challenge__-.json").stat().st_mtime_ns
    build_replicas(tmp_path / "reps", moved=("Rowan/hellaswag",))
    assert _replica_run(tiny_model_dir, data_root, reps) == 0
    assert _counts(run)["cells_run"] == 1 and (run / "cells" / "arc_challenge__-.json").stat().st_mtime_ns == mtime
    after = json.loads((run / "results.json").read_text())["neuronmoe"]["cells"]["hellaswag/-"]["dataset_revision"]
    assert after["revision"] != before["revision"] and after["revision"].startswith("replica:")
    # the report refuses to compare the runs on a cell read at two commits, naming them
    res = json.loads((old / "results.json").read_text())
    res["neuronmoe"]["label"] = "Before"
    (old / "results.json").write_text(json.dumps(res))
    man = json.loads((old / "manifest.json").read_text())  # the report checks results.json against its manifest
    man["files"].update(describe_files(old, ["results.json"]))
    (old / "manifest.json").write_text(json.dumps(man))
    capsys.readouterr()
    assert main(["report", str(old), str(run), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "different dataset commits" in err and "hellaswag/-" in err and before["revision"][:12] in err
    assert "arc_challenge/-" not in err  # read at one commit by both


def test_a_finished_cell_whose_data_cannot_be_reloaded_is_kept_and_marked(tiny_model_dir, data_root, tmp_path, capsys):
    from support.replicas import build_replicas

    reps = build_replicas(tmp_path / "reps")
    assert _replica_run(tiny_model_dir, data_root, reps) == 0
    run = data_root / "eval" / "r"
    first = json.loads((run / "results.json").read_text())
    shutil.rmtree(reps / "Rowan__hellaswag")  # the hub is down for this dataset
    assert _replica_run(tiny_model_dir, data_root, reps) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["results"]["hellaswag"] == first["results"]["hellaswag"]  # the finished result is not dropped
    st = res["neuronmoe"]["cells"]["hellaswag/-"]
    assert st["status"] == "done" and st["reused"] is True and "could not rebuild" in st["note"] and res["neuronmoe"]["complete"]
    assert _counts(run)["cells_kept_without_rebuild"] == 1
    # with other settings the old result does not hold: the cell fails as before
    capsys.readouterr()
    assert _replica_run(tiny_model_dir, data_root, reps, "--seed", "9", "--overwrite") == 2
    assert "1 of 2 cell(s) failed" in capsys.readouterr().err
    assert json.loads((run / "results.json").read_text())["neuronmoe"]["cells"]["hellaswag/-"]["status"] == "failed"


@pytest.fixture(scope="module")
def tm():
    from neuronmoe.evaluation.suites import get_suite
    from neuronmoe.evaluation.taskindex import task_manager

    return task_manager(builtin_dirs=get_suite("paper")["lm_eval_task_dirs"])


def test_an_unpinned_dataset_is_read_at_a_resolved_commit(tm, monkeypatch, tmp_path):
    from neuronmoe.evaluation import cells as cells_mod
    from neuronmoe.evaluation.suites import load_dataset_pins, resolve_suite

    def plan():
        return {c.key: c for c in cells_mod.plan_cells(resolve_suite("paper", ["tr"]), tm, load_dataset_pins())}

    monkeypatch.setattr(cells_mod, "resolve_revision", lambda ds, rev: "a" * 40)
    online = plan()
    cells_mod.resolve_unpinned(list(online.values()), online=True)
    arc = online["arc/tr"]  # malhajar/arc-tr is UNPINNED
    assert arc.resolved == "a" * 40 and arc.kwargs_patch == {"revision": "a" * 40} and arc.data_revision() == "a" * 40
    mmlu = online["mmlu/tr"]  # pinned: untouched
    assert mmlu.resolved is None and mmlu.data_revision() == load_dataset_pins()["malhajar/mmlu-tr"]["revision"]
    # offline: the commit main had when the dataset was downloaded (what an offline load reads), or unknown
    hub = tmp_path / "hub"
    (hub / "datasets--malhajar--arc-tr" / "refs").mkdir(parents=True)
    (hub / "datasets--malhajar--arc-tr" / "refs" / "main").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    offline = plan()
    cells_mod.resolve_unpinned(list(offline.values()), online=False)
    assert offline["arc/tr"].data_revision() == "b" * 40 and "revision" not in offline["arc/tr"].kwargs_patch
    assert offline["hellaswag/tr"].data_revision() == "main (unresolved: offline)"


def test_commits_are_compared_only_where_both_are_known():
    from neuronmoe.errors import InputError
    from neuronmoe.evaluation.provenance import check_dataset_commits

    def run(label, rev):
        return {"neuronmoe": {"label": label, "cells": {"arc/tr": {"status": "done",
                                                                   "dataset_revision": {"dataset": "malhajar/arc-tr", "revision": rev}}}}}

    assert check_dataset_commits([run("A", "a" * 40), run("B", "a" * 40)]) == []
    notes = check_dataset_commits([run("A", "a" * 40), run("B", "main (unresolved: offline)")])
    assert len(notes) == 1 and "arc/tr" in notes[0]
    with pytest.raises(InputError, match=r"arc/tr \(A: malhajar/arc-tr@aaaaaaaaaaaa, B: malhajar/arc-tr@cccccccccccc\)"):
        check_dataset_commits([run("A", "a" * 40), run("B", "c" * 40)])


def test_the_turkish_mmlu_replica_is_laid_out_like_the_hub_and_our_task_reads_it(tm, tmp_path):
    """malhajar/mmlu-tr has no configs: block: datasets would know no subject config and fold dev-4.jsonl into
    validation; the task names each split's files, so its 4-row dev split is there."""
    import datasets
    from support.replicas import build_replicas

    from neuronmoe.evaluation.cells import build_cell, inspect_cell, plan_cells
    from neuronmoe.evaluation.suites import load_dataset_pins, resolve_suite

    reps = build_replicas(tmp_path / "reps")
    folder = reps / "malhajar__mmlu-tr"
    card = (folder / "README.md").read_text()
    assert not card.startswith("---") and "configs:" not in card and (folder / "anatomy" / "dev-4.jsonl").is_file()
    plain = datasets.load_dataset(str(folder))
    assert set(plain) == {"validation", "test"} and plain["validation"].num_rows == 57 * (4 + 2)  # dev folded in
    with pytest.raises(ValueError, match="BuilderConfig 'anatomy' not found"):  # a task naming the config fails
        datasets.load_dataset(str(folder), "anatomy")
    cell = next(c for c in plan_cells(resolve_suite("paper", ["tr"]), tm, load_dataset_pins(), reps) if c.key == "mmlu/tr")
    facts = inspect_cell(cell, build_cell(cell, tm))
    assert facts["splits"] == {"dev": 57 * 4, "validation": 57 * 2, "test": 57 * 2}
    assert facts["fewshot_split"] == "dev" and facts["fewshot_rows"] == 4 and facts["items"] == 57 * 2
    assert cell.configs[:2] == ["abstract_algebra", "anatomy"]  # the subject folders
