"""The paper suite: our task YAMLs load in lm-eval's index with the specified fields (no download)."""
from __future__ import annotations

import pytest

from neuronmoe.evaluation import paper_tasks
from neuronmoe.evaluation.runner import shot_groups
from neuronmoe.evaluation.suites import get_suite, resolve_suite, specs_from_tasks


@pytest.fixture(scope="module")
def tm():
    from neuronmoe.evaluation.taskindex import task_manager

    return task_manager()


def test_generated_yamls_are_in_sync():
    rendered = paper_tasks.render()
    assert len(rendered) == 2 * (57 + 1) + 4
    for name, text in rendered.items():
        assert (paper_tasks.PAPER_TASK_DIR / name).read_text(encoding="utf-8") == text, f"{name}: run python -m neuronmoe.evaluation.paper_tasks"


def test_paper_suite_resolves_to_known_tasks_with_paper_shots(tm):
    from neuronmoe.evaluation.taskindex import check_tasks

    specs = resolve_suite("paper")
    assert len(specs) == 4 * 4
    check_tasks([s.task for s in specs], tm)  # every task exists in the index (built-in or ours)
    by = {(s.benchmark, s.lang): s for s in specs}
    assert by[("arc", "el")].task == "arc_challenge_mt_el" and by[("arc", "tr")].task == "arc_tr"
    assert by[("belebele", "el")].task == "belebele_ell_Grek" and by[("belebele", "hu")].task == "belebele_hun_Latn"
    assert by[("mmlu", "tr")].task == "mmlu_tr" and by[("hellaswag", "hu")].task == "hellaswag_hu"
    assert {b: by[(b, "en")].shots for b in ("arc", "belebele", "hellaswag", "mmlu")} == {"arc": 25, "belebele": 0, "hellaswag": 0, "mmlu": 5}
    groups = shot_groups(specs)
    assert list(groups) == [25, 0, 5] and "mmlu_el" in groups[5]
    assert list(shot_groups(specs, override=3)) == [3]


@pytest.mark.parametrize("lang,dataset", [("el", "ilsp/mmlu_greek"), ("tr", "malhajar/mmlu-tr")])
def test_mmlu_tasks_as_the_paper_defines_them(tm, lang, dataset):
    from lm_eval.tasks._index import Kind

    from neuronmoe.evaluation.taskindex import leaf_configs

    assert tm.task_index[f"mmlu_{lang}"].kind == Kind.GROUP
    leaves = leaf_configs(f"mmlu_{lang}", tm)
    assert len(leaves) == 57
    name, cfg = next((n, c) for n, c in leaves if n.endswith("_anatomy"))
    assert name == f"mmlu_{lang}_anatomy"
    assert cfg["dataset_path"] == dataset and cfg["dataset_name"] == "anatomy"
    assert cfg["test_split"] == "test" and cfg["fewshot_split"] == "dev"
    assert cfg["fewshot_config"]["sampler"] == "first_n" and cfg["num_fewshot"] == 5
    assert cfg["doc_to_text"].startswith("{{question.strip()}}\nA. {{choices[0]}}") and cfg["doc_to_text"].endswith("\nAnswer:")
    assert cfg["doc_to_choice"] == ["A", "B", "C", "D"]
    assert [m["metric"] for m in cfg["metric_list"]] == ["acc"]


@pytest.mark.parametrize(
    "task,dataset,name,shots,split",
    [("arc_el", "ilsp/arc_greek", "ARC-Challenge", 25, "test"), ("arc_tr", "malhajar/arc-tr", "ARC-Challenge", 25, "test"),
     ("hellaswag_el", "ilsp/hellaswag_greek", None, 0, "validation"), ("hellaswag_tr", "malhajar/hellaswag-tr", None, 0, "validation")],
)
def test_arc_and_hellaswag_tasks(tm, task, dataset, name, shots, split):
    cfg = tm.task_index[task].cfg
    assert cfg["dataset_path"] == dataset and cfg.get("dataset_name") == name
    assert cfg["num_fewshot"] == shots
    assert cfg.get("test_split") == split or (cfg.get("test_split") is None and cfg["validation_split"] == split)
    assert {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}


def test_mmlu_target_template_accepts_indices_and_letters():
    from lm_eval.utils import apply_template

    tmpl = paper_tasks._MMLU_TARGET
    assert [apply_template(tmpl, {"answer": a}) for a in (0, 3, "B", "Γ", "2", " D")] == ["0", "3", "1", "2", "2", "3"]


def test_hellaswag_processing():
    import datasets

    from neuronmoe.evaluation.tasks.paper.utils import process_hellaswag

    ds = datasets.Dataset.from_list([
        {"activity_label": "Μαγείρεμα", "ctx_a": "Ένας άντρας κόβει", "ctx_b": "ντομάτες [header] σε", "endings": ["α [step] β", "γ"], "label": "1"},
        {"activity_label": "x", "ctx_a": "y", "ctx_b": "z", "endings": ["a", "b"], "label": ""},  # unlabelled test row
    ])
    out = process_hellaswag(ds)
    assert len(out) == 1
    assert out[0]["query"] == "Μαγείρεμα: Ένας άντρας κόβει Ντομάτες σε"
    assert out[0]["choices"] == ["α β", "γ"] and out[0]["gold"] == 1


def test_unknown_suite_and_language_errors():
    with pytest.raises(ValueError, match="did you mean paper"):
        get_suite("papr")
    with pytest.raises(ValueError, match="no task for arc/de"):
        resolve_suite("paper", ["en", "de"])
    assert [s.task for s in resolve_suite("local", ["el"])] == ["udhr_cloze_el", "heldout_ppl_el"]


def test_plain_task_list_languages():
    specs = specs_from_tasks(["arc_hu", "belebele_ell_Grek", "hellaswag"], shots=2)
    assert [(s.task, s.lang, s.shots) for s in specs] == [("arc_hu", "hu", 2), ("belebele_ell_Grek", "el", 2), ("hellaswag", None, 2)]
