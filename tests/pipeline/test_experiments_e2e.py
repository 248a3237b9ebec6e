"""Experiments end to end at miniature scale, offline: the commands each experiment plans, run in order.

The plan is the experiment's own (``experiment_dry_run``) with a tiny random model and a local CulturaX
stand-in; :func:`miniature` only shrinks sizes (sentences, tokens, steps, items), runs torchrun's
command in this process without DeepSpeed, and points the paper suite at the offline dataset replicas
(tests/evaluation/replicas.py). Bengali and Nepali go through prepare-data (CulturaX configs bn, ne),
neuron analysis, allocation, stage-1 training, every paper-suite cell and the report; Qwen's
experiment runs its similarity (capture site mlp_input) and allocations on a tiny Qwen2 model.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from neuronmoe.cli import main
from neuronmoe.pipeline.experiments import experiment_dry_run, get_experiment

#: ten words per language (our own); sentences spell their index in them, so every sentence is unique
WORDS = {
    "en": "river stone light garden window music paper forest engine cloud".split(),
    "zh": "河 石 光 园 窗 乐 纸 林 机 云".split(),
    "es": "río piedra luz jardín ventana música papel bosque motor nube".split(),
    "el": "ποτάμι πέτρα φως κήπος παράθυρο μουσική χαρτί δάσος μηχανή σύννεφο".split(),
    "tr": "nehir taş ışık bahçe pencere müzik kağıt orman motor bulut".split(),
    "hu": "folyó kő fény kert ablak zene papír erdő motor felhő".split(),
    "de": "Fluss Stein Licht Garten Fenster Musik Papier Wald Motor Wolke".split(),
    "fr": "rivière pierre lumière jardin fenêtre musique papier forêt moteur nuage".split(),
    "ja": "川 石 光 庭 窓 音 紙 森 機 雲".split(),
    "bn": "নদী পাথর আলো বাগান জানালা গান কাগজ বন যন্ত্র মেঘ".split(),
    "ne": "नदी ढुङ्गा उज्यालो बगैँचा झ्याल गीत कागज जङ्गल यन्त्र बादल".split(),
}
END = {"zh": "。", "ja": "。", "bn": "।", "ne": "।"}


def _sentence(lang: str, i: int) -> str:
    w = WORDS[lang]
    sep = "" if lang in ("zh", "ja") else " "
    body = sep.join(w[(i // 10**k) % 10] for k in range(4))
    if lang in ("zh", "ja"):  # one character per word: twice as many, so that a sentence has 10+ characters
        body += body[::-1]
    return body + sep + str(i) + END.get(lang, ".")


def culturax_standin(root: Path, langs: list[str], n_docs: int = 60, per_doc: int = 4) -> Path:
    """A local folder laid out like uonlp/CulturaX: one config per ISO 639-1 code, a train split."""
    cfgs = ""
    for lang in langs:
        recs = [{"text": " ".join(_sentence(lang, d * per_doc + j) for j in range(per_doc)), "url": f"https://x/{lang}/{d}",
                 "source": "mC4", "timestamp": "2020"} for d in range(n_docs)]
        (root / lang).mkdir(parents=True, exist_ok=True)
        (root / lang / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
        cfgs += f"- config_name: {lang}\n  data_files:\n  - split: train\n    path: {lang}/*.jsonl\n"
    (root / "README.md").write_text(f"---\nconfigs:\n{cfgs}---\n# CulturaX stand-in\n", encoding="utf-8")
    return root


# a byte-level tokenizer: Bengali/Devanagari answers are long in tokens, so the whole 512-token context of the tiny model
SCALE = {"--num-sentences": "24", "--max-tokens": "3000", "--top-k": "30"}
FAST_EVAL = ["--limit", "1", "--max-length", "512", "--device", "cpu", "--dtype", "float32", "--batch-size", "16"]


def miniature(cmd: str, replicas: Path, source: Path) -> list[str]:
    """A planned command at miniature scale (the same stage, the same arguments, smaller sizes); every
    language's data from the local CulturaX stand-in ``source``."""
    argv = shlex.split(cmd)
    if "--source" in argv and argv[1] == "prepare-data":
        argv[argv.index("--source") + 1] = f"hf:{source}"
    argv = argv[argv.index("neuronmoe") + 1:] if argv[0] == "torchrun" else argv[1:]
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--deepspeed":  # no DeepSpeed on this CPU run
            i += 2
            continue
        if a in SCALE and not (argv[0] == "similarity" and a == "--max-tokens"):
            out += [a, SCALE[a]]
            i += 2
            continue
        if a == "--profile":
            out += [a, "cpu"]
            i += 2
            continue
        out.append(a)
        i += 1
    sub = out[0]
    if sub == "train":
        out += ["--max-steps", "2", "--cutoff-len", "32", "--batch-size", "2", "--save-steps", "2", "--set", "heldout_max_tokens=64"]
    elif sub == "evaluate":
        out += ["--dataset-replicas", str(replicas), *FAST_EVAL]
    elif sub == "similarity":
        out += ["--max-tokens", "200", "--device", "cpu", "--dtype", "float32"]
    elif sub in ("neurons", "analyze-experts"):
        out += ["--device", "cpu", "--dtype", "float32"]
    elif sub == "allocation-gate":  # a tiny model's allocations cannot be the paper's: let them through
        out += ["--accept-allocation-diff"]
    return out


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    from support.replicas import build_replicas

    return build_replicas(tmp_path_factory.mktemp("replicas"))


def _run_plan(facts: dict, replicas: Path, source: Path, stop_before: str | None = None) -> list[list[str]]:
    ran = []
    for cmd in facts["commands"]:
        argv = miniature(cmd, replicas, source)
        if stop_before and argv[0] == stop_before:
            break
        assert main(argv) == 0, argv
        ran.append(argv)
    return ran


@pytest.mark.slow
def test_bengali_nepali_experiment_end_to_end(tmp_path, tiny_model_dir, replicas, fast_replica_loading):
    exp = get_experiment("llama-bn-ne")
    langs = [*exp.replay, *exp.targets, *exp.neg_langs]
    standin = culturax_standin(tmp_path / "culturax", langs)
    facts = experiment_dry_run(exp, str(tmp_path / "paper"), model=str(tiny_model_dir))
    ran = _run_plan(facts, replicas, standin)
    # Table 11 publishes no allocation for bn/ne: no paper reference, so no allocation gate (issue 28)
    assert [a[0] for a in ran] == ["prepare-data", "neurons", "allocate", "allocate", "train", "train",
                                   "evaluate", "evaluate", "evaluate", "figures", "report", "reproduce-paper"]
    assert not (tmp_path / "paper" / "llama-bn-ne" / "pipeline" / "allocation_gate.json").exists()
    out = tmp_path / "paper" / "llama-bn-ne"
    data = json.loads((out / "data" / "manifest.json").read_text())
    assert data["inputs"]["source"]["configs"]["bn"] == "bn" and data["inputs"]["source"]["configs"]["ne"] == "ne"
    for lang, script in (("bn", "\u0980"), ("ne", "\u0900")):  # Bengali and Devanagari blocks
        text = (out / "data" / "train" / f"{lang}.jsonl").read_text(encoding="utf-8")
        assert any(script <= ch <= chr(ord(script) + 0x7F) for ch in text)
    counts = json.loads((out / "neurons" / "counts.json").read_text())
    assert {"bn", "ne"} <= set(counts["languages"])
    for lang in ("bn", "ne"):
        a = json.loads((out / "allocation" / f"neuronmoe-{lang}.json").read_text())
        assert a["mode"] == "pair" and a["targets"] == [lang] and len(a["experts_per_layer"]) == 3
        assert (out / "train" / f"neuronmoe-{lang}-s1" / "adapter" / "adapter_config.json").exists()
    dense = json.loads((out / "eval" / "dense" / "results.json").read_text())
    cells = {f"{s['benchmark']}/{s['lang']}" for s in dense["neuronmoe"]["tasks"]}
    assert cells == {f"{b}/{x}" for b in ("arc", "belebele", "hellaswag", "mmlu") for x in ("en", "bn", "ne")}
    run = json.loads((out / "eval" / "neuronmoe-bn-s1" / "results.json").read_text())
    assert run["neuronmoe"]["label"] == "NeuronMoE-S1 (bn)"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# Bengali and Nepali extensions of Llama-3.2-3B") and "| Table 11 |" in report
    assert "| NeuronMoE-S1 (bn) | not trained yet" not in report and "not published |" in report
    beside = report.split("## Beside the paper")[1]
    assert "| NeuronMoE-S1 (bn) | arc/bn |" in beside and "| 26.35 |" in beside  # Table 11's value beside ours
    assert "| Dense | belebele/ne |" in beside and "| 42.44 |" in beside
    assert "arc/el" not in beside and "LayerMoE" not in beside  # only this experiment's languages and rows


@pytest.mark.slow
def test_qwen_experiment_similarity_and_allocations_on_a_tiny_qwen(tmp_path, replicas, fast_replica_loading):
    """The Qwen experiment's own commands up to training, on a tiny Qwen2 model (24-layer allocations are
    the dry run's; here the method runs end to end for the architecture)."""
    from neuronmoe.testing import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "tiny-qwen", "qwen2", seed=2)
    exp = get_experiment("qwen-el")
    standin = culturax_standin(tmp_path / "culturax", [*exp.replay, *exp.targets, *exp.neg_langs])
    facts = experiment_dry_run(exp, str(tmp_path / "paper"), model=str(model_dir))
    ran = _run_plan(facts, replicas, standin, stop_before="train")
    assert [a[0] for a in ran] == ["prepare-data", "neurons", "similarity", "allocate", "allocation-gate"]
    out = tmp_path / "paper" / "qwen-el"
    man = json.loads((out / "similarity" / "manifest.json").read_text())
    assert man["config"]["capture_site"] == "mlp_input" and man["config"]["budget"] == 60
    assert man["config"]["setting"] == "g1" and man["config"]["targets"] == ["el", "hu", "tr"]  # LayerMoE's G1
    assert json.loads((out / "allocation" / "neuronmoe-el.json").read_text())["reference"]["name"] == "layermoe"
    assert (out / "figures" / "allocation_neuronmoe-el_vs_layermoe.png").exists()  # Figure 1 for Qwen
    assert main(["reproduce-paper", "--experiment", "qwen-el", "--output-dir", str(tmp_path / "paper"), "--report"]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| NeuronMoE-S1 | not trained yet | 4,2,2,2,1," in report and "(36) |" in report
    assert "capture site `mlp_input`" in report and "Not evaluated yet: dense, layermoe-el-s1, neuronmoe-el-s1." in report
