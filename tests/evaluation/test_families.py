"""Cells for languages without the paper's: benchmark families (eval_families.yaml) resolved against lm-eval's
own task files, the paper suite unchanged for its languages, the coverage table, and the errors (no download)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from neuronmoe.config import load_yaml
from neuronmoe.evaluation.families import (
    NoBenchmarkError,
    coverage,
    format_coverage,
    format_template,
    load_families,
    nearby_tasks,
)
from neuronmoe.evaluation.suites import get_suite, resolve_suite
from neuronmoe.languages import LANGUAGES

PAPER_LANGS = ["en", "el", "tr", "hu", "bn", "ne"]


def _suites_file(tmp_path: Path, mode: str | None, **family_edits) -> Path:
    """eval_suites.yaml with the paper suite's ``families`` replaced (None: removed), and optionally an edited copy
    of eval_families.yaml."""
    data = load_yaml("eval_suites")
    if mode is None:
        data["suites"]["paper"].pop("families")
    else:
        fam = load_yaml("eval_families")
        fam.update(family_edits)
        path = tmp_path / "families.yaml"
        path.write_text(yaml.safe_dump(fam, allow_unicode=True), encoding="utf-8")
        data["suites"]["paper"]["families"] = str(path)
    out = tmp_path / "suites.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


@pytest.mark.parametrize("profile", ["paper", "published-script"])
def test_paper_suite_is_unchanged_for_its_languages(tmp_path, profile):
    """The paper's six languages get exactly the cells of the suite without families (the mechanism before them)."""
    before = resolve_suite("paper", PAPER_LANGS, path=str(_suites_file(tmp_path, None)), profile=profile)
    assert resolve_suite("paper", PAPER_LANGS, profile=profile) == before
    assert len(before) == 24 and [s.benchmark for s in before[::6]] == ["arc", "belebele", "hellaswag", "mmlu"]


def _lm_eval_defines(dirs: list[str]) -> set[str]:
    """Independent reference: the ``task:`` / ``group:`` names written in lm-eval's YAML files under ``dirs``."""
    from neuronmoe.evaluation.taskindex import lm_eval_tasks_dir

    names = set()
    for d in dirs:
        for f in (lm_eval_tasks_dir() / d).rglob("*yaml"):
            names |= set(re.findall(r"^(?:task|group): *([\w.-]+) *$", f.read_text(encoding="utf-8"), re.M))
    return names


def test_every_language_gets_the_first_benchmarks_lm_eval_defines_in_each_family():
    """For every language of our table, each family's cells are its first ``take`` benchmarks (in ``prefer``
    order) whose task lm-eval's own files define: checked against a scan of those files, not the index."""
    suite = get_suite("paper")
    fams = load_families("eval_families", suite)
    for lang in sorted(LANGUAGES):
        if lang in PAPER_LANGS:
            continue
        got = {s.benchmark: s.task for s in resolve_suite("paper", [lang])}
        for fam in fams["families"]:
            want = []
            for b in fam["prefer"]:
                spec = fams["benchmarks"][b]
                task = format_template(spec["task"], lang, spec.get("codes"))
                dirs = [format_template(d, lang, spec.get("codes")) for d in spec["lm_eval_dirs"]]
                if task and task in _lm_eval_defines(dirs):
                    want.append((b, task))
            want = want[: fam["take"]]
            assert [(b, got[b]) for b in fam["prefer"] if b in got] == want, (lang, fam["name"])


def test_swahili_hindi_thai_and_language_codes():
    def tasks(lang):
        return {s.benchmark: (s.task, s.shots, s.metric) for s in resolve_suite("paper", [lang])}

    assert tasks("sw") == {"belebele": ("belebele_swh_Latn", 0, "acc"), "xcopa": ("xcopa_sw", 0, "acc"),
                           "xstorycloze": ("xstorycloze_sw", 0, "acc"), "global_mmlu": ("global_mmlu_full_sw", 5, "acc")}
    # Hindi has Okapi's ARC, HellaSwag and MMLU: the paper's four benchmarks, with the paper's shots
    assert tasks("hi") == {"arc": ("arc_hi", 25, "acc_norm"), "belebele": ("belebele_hin_Deva", 0, "acc"),
                           "hellaswag": ("hellaswag_hi", 0, "acc_norm"), "mmlu": ("m_mmlu_hi", 5, "acc")}
    assert tasks("th") == {"belebele": ("belebele_tha_Thai", 0, "acc"), "xcopa": ("xcopa_th", 0, "acc")}
    assert tasks("ja")["xwinograd"][0] == "xwinograd_jp" and tasks("no")["mmlu"][0] == "m_mmlu_nb"  # codes:
    # profiles and --shots reach the families' cells as the paper's
    pub = {s.key: s.shots for s in resolve_suite("paper", ["sw"], profile="published-script", shots="xcopa=3")}
    assert pub["belebele/sw"] == 5 and pub["xcopa/sw"] == 3


def test_coverage_table_marks_missing_families():
    cov = coverage("paper", ["en", "sw", "th"])
    assert cov["from_families"] == ["sw", "th"] and cov["missing"] == {"th": ["knowledge"]}
    rows = {r["benchmark"]: r for r in cov["rows"]}
    assert rows["xcopa"]["cells"]["th"] == {"task": "xcopa_th", "dataset": "cambridgeltl/xcopa", "shots": 0,
                                            "metric": "acc", "revision": "UNPINNED"}
    assert rows["arc"]["cells"]["en"]["revision"].startswith("pinned 210d026faf99") and rows["arc"]["cells"]["sw"] is None
    lines = format_coverage(cov)
    assert lines[0] == "| family | benchmark | en | sw | th |"
    assert "| knowledge | (none in lm-eval) |  |  | MISSING |" in lines
    assert any(x.startswith("| reading comprehension | Belebele | belebele_eng_Latn (facebook/belebele, 0-shot") for x in lines)


def test_a_language_without_any_benchmark_is_an_error_listing_what_lm_eval_has(tmp_path):
    fams = load_yaml("eval_families")
    only_okapi = [{"name": "commonsense", "take": 1, "prefer": ["arc"]}]
    path = _suites_file(tmp_path, "x", families=only_okapi, benchmarks={"arc": fams["benchmarks"]["arc"]})
    assert [s.task for s in resolve_suite("paper", ["hi"], path=str(path))] == ["arc_hi"]
    with pytest.raises(NoBenchmarkError, match=r"--languages lv: lm-eval ships none.*belebele/belebele_lvs_Latn"):
        resolve_suite("paper", ["en", "lv"], path=str(path))
    assert resolve_suite("paper", ["lv"], path=str(path), strict=False) == []
    near = nearby_tasks("sw")  # one entry per lm-eval folder
    assert "belebele/belebele_swh_Latn" in near and "xcopa/default_sw" in near and len(near) == len({x.split("/")[0] for x in near})


def test_family_config_errors(tmp_path):
    suite = get_suite("paper")
    bad = tmp_path / "f.yaml"
    bad.write_text("families:\n  - {name: x, prefer: [nope]}\nbenchmarks: {}\n")
    with pytest.raises(ValueError, match="prefers 'nope', declared neither"):
        load_families(str(bad), suite)
    bad.write_text("families:\n  - {name: x, prefer: [xcopa]}\nbenchmarks:\n  xcopa: {task: 'xcopa_{code}', shots: 0}\n")
    with pytest.raises(ValueError, match="not in the suite, so it needs label, metric"):
        load_families(str(bad), suite)
    bad.write_text("families:\n  - {name: x, prefer: [arc], take: 0}\nbenchmarks: {}\n")
    with pytest.raises(ValueError, match="take must be >= 1"):
        load_families(str(bad), suite)
