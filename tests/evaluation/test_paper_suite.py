"""The paper suite's definition: cells, profiles, shots, pins, our task YAMLs (no download)."""
from __future__ import annotations

import re

import pytest

from neuronmoe.evaluation import paper_tasks
from neuronmoe.evaluation.suites import (
    UNPINNED,
    apply_shots,
    get_suite,
    load_dataset_pins,
    load_suites,
    parse_shots,
    resolve_suite,
    specs_from_tasks,
)


@pytest.fixture(scope="module")
def tm():
    from neuronmoe.evaluation.taskindex import task_manager

    return task_manager(builtin_dirs=get_suite("paper")["lm_eval_task_dirs"])


def test_generated_yamls_are_in_sync_and_follow_lm_evals_include_pattern():
    rendered = paper_tasks.render()
    # 2 family templates; per language a template, a group, 57 subjects, the answer function, arc, hellaswag
    assert len(rendered) == 2 + 2 * (57 + 5)
    for name, text in rendered.items():
        assert (paper_tasks.PAPER_TASK_DIR / name).read_text(encoding="utf-8") == text, f"{name}: run python -m neuronmoe.evaluation.paper_tasks"  # noqa: E501 (an exact message/data row)
    on_disk = {p.relative_to(paper_tasks.PAPER_TASK_DIR).as_posix() for p in paper_tasks.PAPER_TASK_DIR.rglob("*")
               if "yaml" in p.name or (p.suffix == ".py" and p.parent.name.startswith("mmlu_"))}
    assert on_disk == set(rendered)  # no stale file left behind
    subject = rendered["mmlu_el/mmlu_el_anatomy.yaml"].splitlines()
    assert subject[1] == "include: _default_template_yaml" and len(subject) == 6  # a few lines per subject


def test_paper_suite_maps_every_cell_to_a_known_task(tm):
    from neuronmoe.evaluation.taskindex import check_tasks

    specs = resolve_suite("paper", ["en", "el", "tr", "hu", "bn", "ne"])
    assert len(specs) == 4 * 6
    check_tasks([s.task for s in specs], tm)  # every task exists in the (small) index: built-in or ours
    by = {s.key: s for s in specs}
    assert by["arc/el"].task == "arc_el" and by["arc/tr"].task == "arc_tr" and by["arc/ne"].task == "arc_ne"
    assert by["belebele/bn"].task == "belebele_ben_Beng" and by["belebele/ne"].task == "belebele_npi_Deva"
    assert by["mmlu/tr"].task == "mmlu_tr" and by["hellaswag/hu"].task == "hellaswag_hu" and by["mmlu/bn"].task == "m_mmlu_bn"
    # the item counts every published percentage fits
    assert {k: by[k].items for k in ("arc/en", "arc/el", "arc/tr", "arc/hu", "belebele/el")} == {
        "arc/en": 1172, "arc/el": 1168, "arc/tr": 1171, "arc/hu": 1168, "belebele/el": 900}
    assert [s.lang for s in resolve_suite("paper")] == ["en", "el", "tr", "hu"] * 4  # the default languages


def test_profiles_and_shot_overrides():
    paper = {s.key: (s.shots, s.fewshot_split) for s in resolve_suite("paper")}
    assert paper["arc/en"] == (25, None) and paper["hellaswag/el"] == (0, None) and paper["belebele/hu"] == (0, None)
    assert paper["mmlu/en"] == (5, None) and paper["mmlu/hu"] == (5, None)
    assert paper["mmlu/tr"] == (4, None)  # dev has 4 rows: 4-shot from dev, as the published script ran it
    script = {s.key: s.shots for s in resolve_suite("paper", profile="published-script")}
    assert script["hellaswag/en"] == 10 and script["belebele/tr"] == 5 and script["mmlu/tr"] == 4 and script["mmlu/hu"] == 4
    assert script["mmlu/en"] == 5 and script["arc/el"] == 25
    # the other reading of Turkish MMLU is one override
    alt = {s.key: (s.shots, s.fewshot_split) for s in resolve_suite("paper", shots="mmlu/tr=5@validation")}
    assert alt["mmlu/tr"] == (5, "validation") and alt["mmlu/el"] == (5, None)
    # a cell key beats a benchmark key, whatever the order
    both = {s.key: s.shots for s in resolve_suite("paper", shots="mmlu/el=2,mmlu=3")}
    assert both["mmlu/el"] == 2 and both["mmlu/en"] == 3
    assert parse_shots("hellaswag=10; mmlu/tr=5@validation") == {"hellaswag": (10, None), "mmlu/tr": (5, "validation")}


def test_bad_profiles_and_shots_are_clear_errors():
    with pytest.raises(ValueError, match="no profile 'paperz'"):
        resolve_suite("paper", profile="paperz")
    with pytest.raises(ValueError, match="expected benchmark"):
        parse_shots("mmlu")
    with pytest.raises(ValueError, match="shots must be an integer"):
        parse_shots("mmlu=five")
    with pytest.raises(ValueError, match="no cell or benchmark arcc"):
        apply_shots(resolve_suite("paper", ["en"]), parse_shots("arcc=3"))


def test_every_dataset_of_the_suite_has_a_revision_entry():
    from neuronmoe.evaluation.cells import plan_cells
    from neuronmoe.evaluation.families import suite_task_dirs
    from neuronmoe.evaluation.taskindex import task_manager

    pins = load_dataset_pins()
    # the paper's languages, and languages whose families read every other dataset (sw: XCOPA, XStoryCloze,
    # Global-MMLU; ja: XWinograd)
    langs = ["en", "el", "tr", "hu", "bn", "ne", "sw", "ja"]
    tm = task_manager(builtin_dirs=suite_task_dirs(get_suite("paper"), langs))
    cells = plan_cells(resolve_suite("paper", langs), tm, pins)
    datasets = {c.dataset for c in cells}
    assert None not in datasets and datasets <= set(pins)  # revision is a required field, for every dataset read
    assert set(pins) == datasets  # and the table lists nothing else
    for ds, entry in pins.items():
        rev = entry["revision"]
        assert rev == UNPINNED or re.fullmatch(r"[0-9a-f]{40}", rev), ds
        if rev != UNPINNED:
            assert entry.get("evidence"), f"{ds}: a pinned commit says where it comes from"
        else:
            assert entry.get("reason"), f"{ds}: an unpinned dataset says why"
    pinned = {c.key: c.kwargs_patch.get("revision") for c in cells}  # passed to load_dataset, ours and lm-eval's alike
    assert pinned["mmlu/el"] == pins["ilsp/mmlu_greek"]["revision"] and pinned["arc/tr"] is None
    assert pinned["arc/en"] == pins["allenai/ai2_arc"]["revision"]  # lm-eval's own task gets the pin too
    for c in cells:  # a pinned revision reaches every task: through our YAML or an override of lm-eval's
        assert pinned[c.key] == (c.revision if c.pinned else None), c.key


def test_pins_table_rejects_missing_or_malformed_revisions(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("datasets:\n  a/b: {evidence: x}\nsuites: {}\n")
    with pytest.raises(ValueError, match="'revision' is required"):
        load_dataset_pins(str(bad))
    bad.write_text("datasets:\n  a/b: {revision: main}\n")
    with pytest.raises(ValueError, match="40-hex commit or UNPINNED"):
        load_dataset_pins(str(bad))
    bad.write_text("datasets:\n  a/b: {revision: UNPINNED}\n")
    with pytest.raises(ValueError, match="UNPINNED needs a 'reason'"):
        load_dataset_pins(str(bad))
    bad.write_text("datasets:\n  a/b: {revision: " + "a" * 40 + "}\n")
    with pytest.raises(ValueError, match="needs its 'evidence'"):
        load_dataset_pins(str(bad))


def test_our_yamls_carry_the_pinned_revisions():
    pins = load_dataset_pins()
    files = paper_tasks.render()
    for lang, ds in paper_tasks.MMLU_DATASETS.items():
        # the template, or each subject where the subject names its own files
        text = files[f"mmlu_{lang}/_default_template_yaml" if paper_tasks.MMLU_LAYOUT[lang] == "configs"
                     else f"mmlu_{lang}/mmlu_{lang}_anatomy.yaml"]
        rev = pins[ds]["revision"]
        assert (f"revision: {rev}" in text) == (rev != UNPINNED)
    assert "UNPINNED" in files["arc_tr.yaml"] and "dataset_kwargs" not in files["arc_tr.yaml"]


@pytest.mark.parametrize("lang,dataset,description", [
    ("el", "ilsp/mmlu_greek", "Ακολουθούν ερωτήσεις πολλαπλής επιλογής (με τις απαντήσεις τους) με θέμα: ανατομία.\n\n"),
    ("tr", "malhajar/mmlu-tr", "Aşağıdakiler anatomi ile ilgili çoktan seçmeli sorulardır (cevaplarıyla birlikte).\n\n"),
])
def test_mmlu_tasks_as_the_published_patches_define_them(tm, lang, dataset, description):
    from lm_eval.tasks._index import Kind

    from neuronmoe.evaluation.taskindex import leaf_configs

    assert tm.task_index[f"mmlu_{lang}"].kind == Kind.GROUP
    leaves = leaf_configs(f"mmlu_{lang}", tm)
    assert len(leaves) == 57
    name, cfg = next((n, c) for n, c in leaves if n.endswith("_anatomy"))
    assert name == f"mmlu_{lang}_anatomy"
    assert cfg["dataset_path"] == dataset
    if lang == "el":  # a configs: block on the hub: one config per subject
        assert cfg["dataset_name"] == "anatomy"
    else:  # none on the hub: the subject's files, one pattern per split (dev would otherwise fold into validation)
        assert not cfg.get("dataset_name")
        assert cfg["dataset_kwargs"]["data_files"] == {s: f"anatomy/{s}-*.jsonl" for s in ("dev", "validation", "test")}
        assert cfg["dataset_kwargs"]["revision"] == load_dataset_pins()[dataset]["revision"]
    assert cfg["test_split"] == "test" and cfg["fewshot_split"] == "dev"
    assert cfg["fewshot_config"]["sampler"] == "first_n"
    assert cfg["description"] == description
    assert cfg["doc_to_text"].startswith("{{question.strip()}}\nA. {{choices[0]}}") and cfg["doc_to_text"].endswith("\nAnswer:")
    assert cfg["doc_to_choice"] == ["A", "B", "C", "D"]
    assert [m["metric"] for m in cfg["metric_list"]] == ["acc"]
    descs = {c["description"] for _, c in leaves}
    assert len(descs) == 57  # one line per subject, each naming its own subject


def test_every_subject_has_both_translations():
    for lang in ("el", "tr"):
        assert set(paper_tasks.MMLU_SUBJECT_NAMES[lang]) == set(paper_tasks.MMLU_SUBJECTS)
        assert len(set(paper_tasks.MMLU_SUBJECT_NAMES[lang].values())) == 57


@pytest.mark.parametrize(
    "task,dataset,shots,split",
    [("arc_el", "ilsp/arc_greek", 25, "test"), ("arc_tr", "malhajar/arc-tr", 25, "test"),
     ("hellaswag_el", "ilsp/hellaswag_greek", 0, "validation"), ("hellaswag_tr", "malhajar/hellaswag-tr", 0, "validation")],
)
def test_arc_and_hellaswag_tasks(tm, task, dataset, shots, split):
    cfg = tm.task_index[task].cfg
    assert cfg["dataset_path"] == dataset
    assert cfg["num_fewshot"] == shots
    assert cfg.get("test_split") == split or (cfg.get("test_split") is None and cfg["validation_split"] == split)
    assert {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}


def _mmlu_target(lang: str):
    """doc -> gold index, as the task YAML configures it (lm-eval's own loader; a template or a function)."""
    from lm_eval.tasks._yaml_loader import load_yaml  # what lm-eval's task factory reads YAMLs with
    from lm_eval.utils import apply_template

    cfg = load_yaml(paper_tasks.PAPER_TASK_DIR / f"mmlu_{lang}" / "_default_template_yaml", resolve_func=True)
    target = cfg["doc_to_target"]
    return target if callable(target) else (lambda doc: int(apply_template(target, doc)))


@pytest.mark.parametrize("lang", ["el", "tr"])
def test_mmlu_answers_map_to_an_index_and_anything_else_is_an_error(lang):
    target = _mmlu_target(lang)
    docs = [{"answer": a, "question": "q"} for a in (0, 3, "B", "Γ", "2", " D")]
    assert [target(d) for d in docs] == [0, 3, 1, 2, 2, 3]
    for bad in ("", "  ", "E", "AB", "12", 4, -1, None, True):  # never silently A (the template before mapped "" to A)
        with pytest.raises(ValueError, match="is not an index 0-3 or a letter"):
            target({"answer": bad, "question": "q"})


def test_hellaswag_processing_is_lm_evals_own():
    """Our processing is lm-eval's function on the labelled rows: equal output on tricky strings."""
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs as lm_eval_process

    from neuronmoe.evaluation.tasks.paper.utils import process_hellaswag

    rows = [
        {"activity_label": "Μαγείρεμα", "ctx_a": "Ένας άντρας κόβει", "ctx_b": "ντομάτες ΚΑΙ [header] Αγγούρια", "endings": ["α [step] β", " γ  δ "], "label": "1"},  # noqa: E501 (an exact message/data row)
        {"activity_label": "Baking cookies", "ctx_a": "A woman [title] mixes.", "ctx_b": "THE dough rises", "endings": ["x [title] y", "z"], "label": 0},  # noqa: E501 (an exact message/data row)
        {"activity_label": "Yemek", "ctx_a": "Bir adam", "ctx_b": "İstanbul'da [başlık] yürüyor", "endings": ["a", "b"], "label": " 1"},
        {"activity_label": "x", "ctx_a": "y", "ctx_b": "z", "endings": ["a", "b"], "label": ""},  # unlabelled test row
    ]
    ds = datasets.Dataset.from_list([{**r, "label": str(r["label"])} for r in rows])
    ours = process_hellaswag(ds)
    theirs = lm_eval_process(datasets.Dataset.from_list([{**r, "label": str(r["label"])} for r in rows[:3]]))
    assert len(ours) == 3  # the unlabelled row is dropped
    for a, b in zip(ours, theirs):
        assert (a["query"], a["choices"], a["gold"]) == (b["query"], b["choices"], b["gold"])
    # lm-eval's capitalize(): first letter up, the rest lower-cased
    assert ours[0]["query"] == "Μαγείρεμα: Ένας άντρας κόβει Ντομάτες και αγγούρια"
    assert ours[1]["query"].startswith("Baking cookies: A woman.") and ours[1]["gold"] == 0


def _suite_without(tmp_path, bench, lang):
    """eval_suites.yaml with the local suite's ``bench`` mapped for English only."""
    import yaml

    from neuronmoe.config import load_yaml

    data = load_yaml("eval_suites")
    for b in data["suites"]["local"]["benchmarks"]:
        if b["name"] == bench:
            b["tasks"] = {"en": "udhr_cloze_en"}
    out = tmp_path / "suites.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


def test_unknown_suite_and_language_errors(tmp_path):
    with pytest.raises(ValueError, match="did you mean paper"):
        get_suite("papr")
    with pytest.raises(ValueError, match="no task for udhr_cloze/el"):  # a suite without families stays strict
        resolve_suite("local", ["el"], path=str(_suite_without(tmp_path, "udhr_cloze", "el")))
    assert [s.task for s in resolve_suite("local", ["el"])] == ["udhr_cloze_el", "heldout_ppl_el"]


def test_local_suite_sizes_match_the_builders_defaults():
    from neuronmoe.evaluation.local_tasks import DEFAULT_SIZES

    assert load_suites()["local"]["sizes"] == DEFAULT_SIZES
    # every held-out document of the language with the least held-out text (the new one) is scored
    assert DEFAULT_SIZES["cloze_items"] >= 200 and DEFAULT_SIZES["heldout_docs"] == 0 and DEFAULT_SIZES["heldout_power_ratio"] >= 1


def test_plain_task_list_languages():
    specs = specs_from_tasks(["arc_hu", "belebele_ell_Grek", "hellaswag"], shots=2)
    assert [(s.task, s.lang, s.shots) for s in specs] == [("arc_hu", "hu", 2), ("belebele_ell_Grek", "el", 2), ("hellaswag", None, 2)]
