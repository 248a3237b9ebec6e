"""Source parsing and the bundled-corpus reader on a fake package folder."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronmoe.data.sources import BundledSource, HFSource, JsonlSource, SourceError, TxtSource, make_source
from neuronmoe.data.text import join_sentences, normalize, split_sentences


def test_make_source_kinds_and_hf_config_template():
    assert isinstance(make_source("bundled"), BundledSource)
    assert isinstance(make_source("jsonl:/x/{lang}.jsonl"), JsonlSource)
    assert isinstance(make_source("txt:/x"), TxtSource)
    hf = make_source("hf:uonlp/CulturaX")
    assert isinstance(hf, HFSource) and hf.name == "uonlp/CulturaX" and hf.config == "{lang}" and hf.is_large
    hf2 = make_source("hf:org/ds:{iso3}_sub")
    assert hf2.name == "org/ds" and hf2.config == "{iso3}_sub"
    for bad in ("csv:/x", "jsonl:", "hf:", "bundledx"):
        with pytest.raises(SourceError, match="--source"):
            make_source(bad)


def test_bundled_reader_drops_preamble_of_main_file_only(tmp_path):
    root = tmp_path / "data"
    (root / "ell").mkdir(parents=True)
    (root / "ell" / "ell.txt").write_text("Βεβαίως. Ακολουθεί το κείμενο.\n\n### **1. Τίτλος**\n\nΠρώτη πρόταση. Δεύτερη πρόταση.\n")
    (root / "ell" / "extra.txt").write_text("Κανονική πρόταση εδώ.\n")
    (root / "eng").mkdir()
    (root / "eng" / "eng.txt").write_text("Of course. Here it is.\nA sentence.\n")
    src = BundledSource("bundled", root=root)
    assert [p.name for p in src.files("el")] == ["ell.txt", "extra.txt"]
    assert list(src.documents("el")) == [["Πρώτη πρόταση. Δεύτερη πρόταση."], ["Κανονική πρόταση εδώ."]]
    src.check("el")
    with pytest.raises(SourceError, match=r"language 'tr'.*no tur/tur.txt.*has: ell, eng"):
        src.check("tr")
    (root / "eng" / "eng.txt").write_text("")
    with pytest.raises(SourceError, match="eng.txt: file is empty"):
        src.check("en")


def test_txt_source_errors_name_folder_and_language(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        TxtSource(f"txt:{tmp_path / 'nope'}").resolve("en")
    (tmp_path / "el").mkdir()
    with pytest.raises(FileNotFoundError, match=r"language 'el': no \*.txt"):
        TxtSource(f"txt:{tmp_path}").resolve("el")
    with pytest.raises(FileNotFoundError, match="language 'de': neither de.txt nor de/"):
        TxtSource(f"txt:{tmp_path}").resolve("de")


def test_jsonl_record_without_text_field_names_the_line(tmp_path):
    (tmp_path / "en.jsonl").write_text('{"text": "Fine."}\n{"content": "x"}\n')
    with pytest.raises(SourceError, match=r"en.jsonl:2: no string field 'text'"):
        list(JsonlSource(f"jsonl:{tmp_path}").documents("en"))


def test_hf_source_unknown_config_is_a_clear_error(hf_standin):
    with pytest.raises(SourceError, match=r"language 'tr'.*config 'tr'"):
        HFSource(f"hf:{hf_standin}").check("tr")


_WORD = st.text(alphabet="abcXYZ\u03b1\u0391", min_size=1, max_size=6)
_PUNCT = st.sampled_from(["", ".", "!", "?", ";", ",", '."', "…"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_WORD, _PUNCT), min_size=1, max_size=30), st.sampled_from([("Latn", "en"), ("Grek", "el")]))
def test_split_sentences_never_loses_text(parts, lang):
    paragraph = " ".join(w + p for w, p in parts)
    sents = split_sentences(paragraph, *lang)
    assert join_sentences(sents, lang[0]) == normalize(paragraph)
    assert all(s == s.strip() and s for s in sents)
