"""A workspace every reliability test reads: a tiny model, prepared data with a real manifest (sha256 of
every file, tokenizer fingerprint), neuron results, an allocation, a regular file that blocks paths."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_helpers import SENTENCES, write_data  # noqa: E402


@pytest.fixture(scope="session")
def ws(tmp_path_factory):
    """The shared workspace (see the module docstring); its paths as a dict of placeholders."""
    from neuronmoe.cli import main
    from neuronmoe.models import load_tokenizer
    from neuronmoe.testing import save_tiny_model

    root = tmp_path_factory.mktemp("reliability ws Ελληνικά")  # spaces and Greek letters on purpose
    model = save_tiny_model(root / "model", "llama")
    tok = load_tokenizer(str(model))
    out = root / "out"
    write_data(out / "data", tok)
    rc = main(["neurons", "--model", str(model), "--output-dir", str(out), "--languages", "en,el,tr", "--dtype",
               "float32", "--device", "cpu", "--batch-size", "4", "--top-k", "30", "--no-progress"])
    assert rc == 0
    alloc = {"experts_per_layer": [3, 1, 2], "num_layers": 3, "total_experts": 6, "mode": "test"}
    from transformers import AutoConfig

    from neuronmoe.utils.fingerprint import config_fingerprint

    alloc["base_model_fingerprint"] = config_fingerprint(AutoConfig.from_pretrained(model))
    (out / "allocation").mkdir()
    (out / "allocation" / "tiny.json").write_text(json.dumps(alloc))
    (out / "similarity").mkdir()
    (out / "similarity" / "scores.csv").write_text("layer,score\n0,0.9\n1,0.5\n2,0.7\n")
    # neuron results that selected nothing (what --ap-threshold 2 used to write)
    empty = root / "neurons-empty"
    empty.mkdir()
    man = json.loads((out / "neurons" / "manifest.json").read_text())
    man["config"]["ap_threshold"] = 2.0
    (empty / "manifest.json").write_text(json.dumps(man))
    for lang in SENTENCES:
        (empty / f"selected_{lang}.csv").write_text("layer,module,index,ap\n")
    from neuronmoe.utils.manifest import describe_files

    man["files"].update(describe_files(empty, [f"selected_{lang}.csv" for lang in SENTENCES]))
    (empty / "manifest.json").write_text(json.dumps(man))  # consistent: what the stage itself would have written
    (empty / "counts.json").write_text((out / "neurons" / "counts.json").read_text())
    # prepared data whose samples changed after the manifest was written / of another tokenizer
    tampered = write_data(root / "data-tampered", tok)
    with open(tampered / "samples" / "el.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "Μια πρόταση που προστέθηκε αργότερα.", "lang": "el"}, ensure_ascii=False) + "\n")
    # training documents and UDHR paragraphs replaced after the manifest was written (Greek -> English)
    for split in ("train", "udhr"):
        el, en = tampered / split / "el.jsonl", out / "data" / ("replay" if split == "train" else split) / "en.jsonl"
        el.write_text(en.read_text(encoding="utf-8"), encoding="utf-8")
    tampered_out = root / "tampered-out"
    tampered_out.mkdir()
    (tampered_out / "data").symlink_to(tampered, target_is_directory=True)
    (tampered_out / "allocation").symlink_to(out / "allocation", target_is_directory=True)
    # neuron results whose selected_el.csv lost its last rows after neurons/manifest.json was written
    neurons_cut = root / "neurons-truncated"
    shutil.copytree(out / "neurons", neurons_cut)
    csv_el = neurons_cut / "selected_el.csv"
    csv_el.write_text("".join(csv_el.read_text().splitlines(keepends=True)[:-3]))
    # manifests that are not manifests
    for name, text in (("data-manifest-list", "[]"), ("data-files-list", json.dumps({"files": ["samples/el.jsonl"]}))):
        d = root / name
        shutil.copytree(out / "data", d)
        (d / "manifest.json").write_text(text)
    latin1 = root / "neurons-latin1"
    shutil.copytree(out / "neurons", latin1)
    (latin1 / "selected_el.csv").write_bytes("layer,module,index,ap\n0,gate_proj,1,0.9 \xe9\n".encode("latin-1"))
    other_tok = write_data(root / "data-other-tok", tok, fingerprint="0123456789abcdef")
    adapters = make_adapters(root, model)
    huge = dict(alloc, experts_per_layer=[100_000, 1, 2], total_experts=100_003)
    (root / "alloc-huge.json").write_text(json.dumps(huge))
    (root / "scores-huge.csv").write_text("layer,score\n0,1e308\n1,1e308\n2,1\n")
    nan_ap = root / "neurons-nan"  # selected units with AP NaN (activations that were NaN), manifest consistent
    shutil.copytree(out / "neurons", nan_ap)
    sel = nan_ap / "selected_el.csv"
    rows = sel.read_text().splitlines()
    sel.write_text("\n".join([rows[0], *(",".join(r.split(",")[:3] + ["nan"]) for r in rows[1:])]) + "\n")
    man_nan = json.loads((nan_ap / "manifest.json").read_text())
    man_nan["files"].update(describe_files(nan_ap, ["selected_el.csv"]))
    (nan_ap / "manifest.json").write_text(json.dumps(man_nan))
    # a killed evaluation: results.json (rewritten after every cell) and cells/, but no manifest.json
    killed = root / "eval-partial" / "eval" / "killed"
    (killed / "cells").mkdir(parents=True)
    (killed / "results.json").write_text(json.dumps({"results": {"udhr_cloze_el": {"acc,none": 1.0}},
                                                     "neuronmoe": {"label": "killed"}}))
    # a training run with a damaged checkpoint only
    run = root / "runs" / "train" / "damaged"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (run / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")
    (root / "runs" / "train" / "link").symlink_to(out / "neurons", target_is_directory=True)  # --overwrite: never
    (root / "runs" / "train" / "foreign").mkdir()  # a folder that is not one of our runs
    (root / "runs" / "train" / "foreign" / "notes.txt").write_text("my own notes\n")
    (root / "runs" / "data").symlink_to(out / "data")
    (root / "runs" / "allocation").symlink_to(out / "allocation")
    blocker = root / "a-file"
    blocker.write_text("not a folder\n")
    (root / "bad.yaml").write_text("no_such_key: 1\n")
    (root / "broken.json").write_text("{not json")
    return {"ws": str(root), "model": str(model), "out": str(out), "data": str(out / "data"), "file": str(blocker),
            "neurons_empty": str(empty), "tampered": str(tampered), "other_tok": str(other_tok),
            "runs": str(root / "runs"), "tampered_out": str(tampered_out), "neurons_truncated": str(neurons_cut),
            "data_manifest_list": str(root / "data-manifest-list"), "data_files_list": str(root / "data-files-list"),
            "neurons_latin1": str(latin1), **adapters, "alloc_huge": str(root / "alloc-huge.json"),
            "scores_huge": str(root / "scores-huge.csv"), "neurons_nan": str(nan_ap), "bad_yaml": str(root / "bad.yaml"),
            "broken_json": str(root / "broken.json")}


def make_adapters(root: Path, model: Path) -> dict[str, str]:
    """A good MoE adapter of the tiny model; the same without its weights, with its weights cut in half; an
    adapter of another base (same layer count, other MLP size) without a recorded fingerprint."""
    import peft
    from transformers import AutoModelForCausalLM

    from neuronmoe.moe import MoEConfig
    from neuronmoe.testing import save_tiny_model

    def adapter(base_dir: Path, out: Path) -> Path:
        base = AutoModelForCausalLM.from_pretrained(str(base_dir))
        peft.get_peft_model(base, MoEConfig(experts_per_layer=[3, 1, 2], top_k=2)).save_pretrained(out)
        return out

    good = adapter(model, root / "adapter-good")
    no_weights = root / "adapter-no-weights"
    shutil.copytree(good, no_weights)
    (no_weights / "adapter_model.safetensors").unlink()
    cut = root / "adapter-truncated"
    shutil.copytree(good, cut)
    w = cut / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    other = adapter(save_tiny_model(root / "model-other", "llama", intermediate_size=48), root / "adapter-other-base")
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg.pop("base_model_fingerprint", None)
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    return {"adapter_good": str(good), "adapter_no_weights": str(no_weights), "adapter_truncated": str(cut),
            "adapter_other_base": str(other)}
