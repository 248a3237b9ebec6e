"""Per-language sources (the paper's replay corpora, Appendix D) on local stand-ins of the real record
formats: SlimPajama (train/chunkN/*.jsonl, text + meta), SkyPile (one jsonl file of text), CulturaX (one
config per language: text, timestamp, url, source). No hub access: the shipped reading recipes of the named
datasets are applied to the stand-in folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_corpus import paragraphs, write_jsonl

from neuronmoe.config import load_yaml
from neuronmoe.data.lang_sources import HFFilesSource, PerLanguageSource, make_sources, parse_source, source_for
from neuronmoe.data.prepare import prepare_data
from neuronmoe.data.settings import DataSettings
from neuronmoe.data.sources import HFSource, SourceError

PAPER = "en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,es=hf:uonlp/CulturaX"


def _zh(i: int) -> str:
    return f"第{i}条河流经过旧磨坊流入山谷。第{i}个孩子在花园里玩到天黑。"


def _es(i: int) -> str:
    return f"El río número {i} pasa junto al viejo molino. La niña {i} jugó en el jardín hasta la noche."


def _en(i: int) -> str:
    return f"The river number {i} runs past the old mill. The child {i} played in the garden until dark."


@pytest.fixture
def standins(tmp_path: Path) -> dict[str, Path]:
    """SlimPajama / SkyPile / CulturaX stand-ins: files the recipe must pick and files it must not."""
    slim = tmp_path / "slimpajama"
    for chunk, start in (("chunk1", 0), ("chunk10", 1000), ("chunk2", 2000)):
        for f in range(2):
            write_jsonl(slim / "train" / chunk / f"example_train_{f}.jsonl",
                        [{"text": _en(start + 100 * f + i), "meta": {"redpajama_set_name": "RedPajamaC4"}} for i in range(30)])
    write_jsonl(slim / "validation" / "chunk1" / "example_holdout_0.jsonl", [{"text": _en(9000 + i), "meta": {}} for i in range(5)])
    sky = tmp_path / "skypile"
    write_jsonl(sky / "data" / "2023-14_zh_middle_0009.jsonl", [{"text": _zh(i)} for i in range(120)])
    write_jsonl(sky / "data" / "2023-14_zh_middle_0010.jsonl", [{"text": _zh(5000 + i)} for i in range(20)])
    cx = tmp_path / "culturax"
    write_jsonl(cx / "es" / "es_part_00000.jsonl",
                [{"text": _es(i), "timestamp": "2021", "url": f"https://x/es/{i}", "source": "mC4"} for i in range(120)])
    (cx / "README.md").write_text("---\nconfigs:\n- config_name: es\n  data_files:\n  - split: train\n    path: es/*.jsonl\n---\n",
                                  encoding="utf-8")
    el = tmp_path / "el-folder" / "el.jsonl"
    pars = paragraphs("el", 240)
    write_jsonl(el, [{"text": "\n".join(pars[i:i + 2])} for i in range(0, len(pars), 2)])
    return {"slim": slim, "sky": sky, "cx": cx, "el": el}


def _mapping(st: dict[str, Path]) -> dict:
    """The paper's sources, each stand-in read with the shipped recipe of the dataset it stands for."""
    presets = load_yaml("data")["hf_datasets"]
    return {"en": {"spec": f"hf:{st['slim']}", **presets["cerebras/SlimPajama-627B"]},
            "zh": {"spec": f"hf:{st['sky']}", **presets["Skywork/SkyPile-150B"]},
            "es": f"hf:{st['cx']}",
            "el": f"jsonl:{st['el'].parent}"}


def test_parse_source_forms():
    assert parse_source("bundled") == {"*": {"spec": "bundled"}}
    assert parse_source(PAPER) == {"en": {"spec": "hf:cerebras/SlimPajama-627B"}, "zh": {"spec": "hf:Skywork/SkyPile-150B"},
                                   "es": {"spec": "hf:uonlp/CulturaX"}}
    assert parse_source("hf:uonlp/CulturaX:{lang},en=jsonl:/d/en.jsonl") == {
        "*": {"spec": "hf:uonlp/CulturaX:{lang}"}, "en": {"spec": "jsonl:/d/en.jsonl"}}
    assert parse_source({"*": "bundled", "en": {"spec": "hf:x/y", "shuffle_seed": 22}})["en"] == {"spec": "hf:x/y", "shuffle_seed": 22}
    with pytest.raises(SourceError, match="language en given twice"):
        parse_source("en=bundled,en=hf:x")
    with pytest.raises(SourceError, match="more than one default"):
        parse_source("bundled,hf:x,en=bundled")
    with pytest.raises(SourceError, match="unknown option"):
        parse_source({"en": {"spec": "hf:x", "shufle_seed": 22}})


def test_paper_sources_get_the_reference_recipes_without_network():
    src = make_sources(PAPER + ",hf:uonlp/CulturaX", ["el", "en", "zh", "es"])
    assert isinstance(src, PerLanguageSource)
    en, zh, es, el = (source_for(src, x) for x in ("en", "zh", "es", "el"))
    assert isinstance(en, HFFilesSource) and (en.config, en.data_files, en.shuffle_seed) == (None, "train/chunk1*/*", 22)
    assert isinstance(zh, HFFilesSource) and zh.data_files.endswith("2023-14_zh_middle_0009.jsonl") and zh.shuffle_seed == 22
    assert type(es) is HFSource and es.name == "uonlp/CulturaX" and es.config == "{lang}"
    assert el is src.by_lang["*"]
    d = src.describe(["en", "es"])
    assert d["languages"]["en"]["shuffle_seed"] == 22 and d["languages"]["es"]["configs"] == {"es": "es"}
    # one spec for every language stays the plain source (manifests of existing runs unchanged)
    assert type(make_sources("hf:uonlp/CulturaX", ["el", "en"])) is HFSource


@pytest.mark.parametrize("value, langs, match", [
    (PAPER, ["el", "en", "zh", "es"], "no source for language 'el'"),
    ("zh=hf:Skywork/SkyPile-150B,bundled", ["el", "en"], "zh is not among the prepared languages"),
    ({"en": {"spec": "bundled", "shuffle_seed": 22}}, ["en"], "apply to hf: sources only"),
])
def test_per_language_source_errors(value, langs, match):
    with pytest.raises(SourceError, match=match):
        make_sources(value, langs)


def _slim_streamed(slim: Path) -> list[str]:
    """SlimPajama's recipe read independently: datasets' streamed json builder over chunk1 and chunk10 (not chunk2
    or validation), files in seed-22 order through a 10,000-document buffer."""
    import datasets

    files = sorted(str(p) for c in ("chunk1", "chunk10") for p in (slim / "train" / c).glob("*.jsonl"))
    ds = datasets.load_dataset("json", data_files=files, split="train", streaming=True).shuffle(seed=22, buffer_size=10000)
    return [r["text"] for r in ds]


def test_slimpajama_is_streamed_not_downloaded_whole():
    """The recipe streams SlimPajama (its files are read one by one, as many as the documents need) instead of
    downloading train/chunk1* (~179 GB) for 50k documents; SkyPile's one file is still shuffled whole."""
    presets = load_yaml("data")["hf_datasets"]
    assert presets["cerebras/SlimPajama-627B"]["shuffle_buffer"] == 10000
    assert presets["Skywork/SkyPile-150B"].get("shuffle_buffer") is None


def test_recipe_reads_the_chosen_files_in_the_reference_shuffled_order(standins):
    """The documents equal an independent read: datasets' json builder over the files the recipe names,
    shuffled with seed 22 (chunk1 and chunk10, not chunk2 or validation); SlimPajama streamed (buffer)."""
    import datasets

    src = make_sources(_mapping(standins), ["en", "zh", "es", "el"])
    ref = _slim_streamed(standins["slim"])
    got = [" ".join(d) for d in src.documents("en")]
    assert got == ref and len(got) == 120
    assert got[:5] != [_en(i) for i in range(5)]  # not the file order: shuffled
    zh_ref = datasets.load_dataset("json", data_files=str(standins["sky"] / "data" / "2023-14_zh_middle_0009.jsonl"),
                                   split="train").shuffle(seed=22)["text"]
    assert [" ".join(d) for d in src.documents("zh")] == zh_ref
    assert [" ".join(d) for d in src.documents("es")][:3] == [_es(0), _es(1), _es(2)]  # CulturaX: streamed in file order


def test_prepare_data_with_per_language_replay_sources(tmp_path, standins, tiny_model_dir, udhr_folder):

    cfg = DataSettings.resolve(environ={}, output_dir=str(tmp_path / "o"), model=str(tiny_model_dir), progress=False,
                               new_langs=["el"], old_langs=["en", "zh", "es"], neg_langs=[], source=_mapping(standins),
                     num_samples=30, replay_docs=25, batch_docs=16, udhr=False)
    m = prepare_data(cfg, udhr_folder=udhr_folder)
    data = tmp_path / "o" / "data"
    src = m["inputs"]["source"]
    assert src["kind"] == "per-language"
    assert src["languages"]["en"]["data_files"] == "train/chunk1*/*" and src["languages"]["en"]["shuffle_seed"] == 22
    assert src["languages"]["el"]["kind"] == "jsonl"
    for lang in ("en", "zh", "es"):
        assert m["counts"][lang]["replay_docs"] == 25  # the per-language cap (50k at paper scale)
    # the replay documents are the first shuffled documents, in that order, minus the ones held out
    shuffled = _slim_streamed(standins["slim"])
    replay = [json.loads(x)["text"] for x in (data / "replay" / "en.jsonl").read_text().splitlines()]
    held = [json.loads(x)["text"] for x in (data / "heldout" / "en.jsonl").read_text().splitlines()]
    read = m["counts"]["en"]["documents_read"]
    assert [t for t in shuffled[:read] if t not in held][:25] == replay
    assert not any(_en(2000) in t or "9000" in t for t in replay)  # chunk2 and validation are never read
