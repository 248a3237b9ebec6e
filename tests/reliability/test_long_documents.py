"""Memory stays bounded for any document (issue 24, item 5): texts longer than ``PIECE_CHARS`` are tokenized in
pieces cut before whitespace, with the ids (and counts) of the whole text, and without the tokenizer's
per-token memory for the whole text at once."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from neuronmoe.data import tokenize as tk


def long_text(n_chars: int) -> str:
    words = ["Το", "ποτάμι", "περνά", "δίπλα", "από", "τον", "παλιό", "μύλο.", "The", "river", "runs", "past", "42,"]
    out, i = [], 0
    while sum(map(len, out)) + len(out) < n_chars:
        out.append(words[i % len(words)] + ("\n" if i % 97 == 0 else ""))
        i += 1
    return " ".join(out)


def test_pieces_are_the_text_cut_before_whitespace():
    text = long_text(3 * tk.PIECE_CHARS + 123)
    parts = tk.pieces(text)
    assert "".join(parts) == text and len(parts) >= 4
    assert all(len(p) <= tk.PIECE_CHARS for p in parts)
    assert all(p[0] in " \n" for p in parts[1:])  # every cut falls before whitespace
    nospace = "α" * (2 * tk.PIECE_CHARS + 5)
    assert "".join(tk.pieces(nospace)) == nospace and max(map(len, tk.pieces(nospace))) == tk.PIECE_CHARS


@pytest.mark.parametrize("which", ["byte", "embedded"])
def test_long_texts_get_the_ids_and_counts_of_the_whole_text(which, tiny_model_dir):
    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir) if which == "byte" else None)
    text = long_text(int(2.5 * tk.PIECE_CHARS))
    short = "Μια μικρή πρόταση."
    whole = tok(text, add_special_tokens=False)["input_ids"]
    ids = tk.encoder(tok)([short, text, short])
    assert list(ids[1]) == whole and list(ids[0]) == list(ids[2]) == tok(short, add_special_tokens=False)["input_ids"]
    assert tk.lengths(tok)([text, short]) == [len(whole), len(ids[0])]
    assert tk.lengths(tok, special=True)([text]) == [len(tok(text)["input_ids"])]


PEAK = textwrap.dedent("""
    import resource, sys
    from neuronmoe.models import load_tokenizer
    from neuronmoe.data.tokenize import count_tokens
    tok = load_tokenizer(sys.argv[1])
    count = count_tokens(tok)
    count(["warm up"], False)
    text = ("Το ποτάμι περνά δίπλα από τον παλιό μύλο. " * (int(sys.argv[2]) // 42 + 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = count([text], False)[0]
    print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
""")


@pytest.mark.slow
def test_counting_a_long_line_needs_little_memory(tiny_model_dir):
    """A 4 MB line: the tokenizer alone grew the process by ~1.1 GB; in pieces it stays within 60 MB."""
    r = subprocess.run([sys.executable, "-c", PEAK, str(tiny_model_dir), str(4_000_000)], capture_output=True, text=True,
                       check=True)
    n, growth_mb = r.stdout.split()
    assert int(n) > 4_000_000 and float(growth_mb) < 60, r.stdout


# --------------------------------------------------------------------------------------------------------------------
# Any long document, any stage (issue 24, item 5): a document over LONG_TEXT_BYTES is read, split, deduplicated,
# counted, written and packed in pieces; with the piece sizes forced small, every output equals the whole document's.
# --------------------------------------------------------------------------------------------------------------------
import json  # noqa: E402
import random  # noqa: E402
import unicodedata  # noqa: E402

import numpy as np  # noqa: E402

from neuronmoe.data import longdoc  # noqa: E402
from neuronmoe.data.text import SentenceSplitter, paragraphs, split_sentences  # noqa: E402
from neuronmoe.utils import longtext  # noqa: E402

ODD = ["a", "b", " ", "  ", "\n", "\r\n", "\t", '"', "\\", "/", "é", "e\u0301", "Ω", "日", "😀", "\u2028", "\x00", "\x1f",
       "\u2000", "\u3000", " \u0301", "\u1100\u1161", "\x85", "\r"]


def _records(rng: random.Random, n: int) -> list[dict]:
    out = []
    for k in range(n):
        text = "".join(rng.choice(ODD) for _ in range(rng.choice([0, 5, 300, 2000])))
        rec = {"id": k, "text": text, "meta": {"x": [1, 2.5, None, True, "\ud83d\ude00 \ud800"]}, "lang": "el"}
        out.append(rec if rng.random() < 0.5 else {"lang": "el", "text": text, "n": -3e5})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_long_json_lines_are_read_like_json_loads(tmp_path, monkeypatch, seed):
    """Lines parsed in pieces (any limit, any chunk size) give the objects ``json.loads`` gives, string values over
    the limit as FileText that read back to the same string; line numbers, blank lines and CRLF as before."""
    from neuronmoe.utils.io import iter_jsonl

    rng = random.Random(seed)
    f = tmp_path / "x.jsonl"
    with open(f, "w", encoding="utf-8", newline="") as fh:
        for rec in _records(rng, 6):
            lone_surrogate = "meta" in rec  # written escaped: it is not UTF-8
            fh.write(json.dumps(rec, ensure_ascii=lone_surrogate or rng.random() < 0.5) + rng.choice(["\n", "\r\n"]))
            fh.write(rng.choice(["", "  \n"]))
    monkeypatch.setattr(longtext, "CHUNK_BYTES", rng.choice([1, 3, 7, 64]))

    def whole(v):
        if isinstance(v, longtext.FileText):
            t = v.read()
            assert v.nbytes == len(t.encode("utf-8", "surrogatepass")) and v.blank == (not t.strip())
            assert "".join(v.chunks(5)) == t
            return t
        return {k: whole(x) for k, x in v.items()} if isinstance(v, dict) else [whole(x) for x in v] if isinstance(v, list) else v

    want = list(iter_jsonl(f))
    for limit in (1, 8, 100, 1 << 20):
        got = list(longtext.iter_jsonl_long(f, limit=limit))
        assert [(i, whole(r)) for i, r in got] == want
    assert any(isinstance(r["text"], longtext.FileText) for _, r in longtext.iter_jsonl_long(f, limit=100))


@pytest.mark.parametrize("bad, message", [
    ('{"text": "abc', "not valid JSON (Unterminated string)"), ('{"text": "a\\x"}', "not valid JSON (Invalid \\escape)"),
    ('{"text": "abc"} x', "not valid JSON (Extra data)"), ("[1, 2, 3]", "expected a JSON object per line"),
    ('{"text": "ab\u0001"}', "not valid JSON (Invalid control character"), ('{"a": tru}', "not valid JSON (Expecting value)"),
])
def test_a_bad_long_line_is_one_error_naming_the_line(tmp_path, bad, message):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: {re.escape(message)}"):
        list(longtext.iter_jsonl_long(f, limit=4))


def test_paragraph_runs_are_the_paragraphs():
    """``stream_paragraphs`` over any chunks, with any run size, gives ``paragraphs``: NFC and whitespace cut only at
    whitespace and line breaks (combining marks after a space, Hangul jamo, U+2000, CRLF across chunks)."""
    rng = random.Random(1)
    for _ in range(300):
        text = "".join(rng.choice(ODD + ["word", "λέξη "]) for _ in range(rng.randint(0, 200)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 8))))
        chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        pars, cur = [], []
        for run, last in longdoc.stream_paragraphs(chunks, window=rng.choice([1, 4, 30, 1000])):
            assert run and run == run.strip()
            cur.append(run)
            if last:
                pars.append(" ".join(cur))
                cur = []
        assert not cur and pars == paragraphs(text), repr(text)
    for w in [c for c in map(chr, range(0x3001)) if c.isspace()]:  # cutting before any whitespace keeps NFC
        a, b = "e\u0301\u0323a", w + "\u0301b\u0308"
        assert unicodedata.normalize("NFC", a + b) == unicodedata.normalize("NFC", a) + unicodedata.normalize("NFC", b)


@pytest.mark.parametrize("script, code", [("Latn", "en"), ("Grek", "el"), ("Jpan", "ja")])
def test_sentence_splitter_gives_the_sentences_of_the_whole_paragraph(script, code):
    rng = random.Random(script)
    words = ["Dr.", "etc.", "A.", "word", "λέξη;", "Yes!", "(Quote.", "«Ναι.»", "end.)", "x?", "why?!", "文です。",
             "「はい。」", "ok!", "lower.", "Upper", "((((((", "“Open", "Mr", ".", "...", "e.g.", "…"]
    for _ in range(300):
        par = " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))
        runs, cur = [], []
        for w in par.split(" "):
            cur.append(w)
            if rng.random() < 0.3:
                runs.append(" ".join(cur))
                cur = []
        runs += [" ".join(cur)] if cur else []
        split = SentenceSplitter(script, code)
        got = [s for r in runs for s in split.feed(r)] + split.finish()
        assert got == split_sentences(par, script, code), par


def test_streamed_pieces_counts_and_ids_equal_the_whole_text(tiny_model_dir):
    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    text = long_text(3 * tk.PIECE_CHARS + 77)
    for size in (1, 999, 50_000):
        chunks = [text[i:i + size] for i in range(0, len(text), size)]
        assert list(tk.stream_pieces(chunks)) == tk.pieces(text)
    chunks = [text[i:i + 4321] for i in range(0, len(text), 4321)]
    assert tk.count_stream(tk.count_tokens(tok), chunks) == tk.count_tokens(tok)([text], False)[0]
    assert np.concatenate(list(tk.encode_stream(tk.encoder(tok), chunks))).tolist() == list(tk.encoder(tok)([text])[0])
    assert list(tk.stream_pieces([])) == tk.pieces("") == [""]


def _long_corpus(rng: random.Random, lang: str, n_docs: int) -> list[str]:
    """Documents of unique and repeated sentences; every fifth a long one of several paragraphs."""
    start = {"en": "The", "el": "Το", "de": "Der"}[lang]
    words = {"en": "river stone light garden", "el": "ποτάμι πέτρα φως κήπος", "de": "Fluss Stein Licht Garten"}[lang].split()

    def sent(i):
        return f"{start} {' '.join(rng.choice(words) for _ in range(rng.randint(1, 12)))} {i}{rng.choice('.!?')}"

    docs = []
    for d in range(n_docs):
        n_par = rng.randint(5, 12) if d % 5 == 2 else rng.randint(1, 2)
        pars = [" ".join(sent(rng.randint(0, 400)) for _ in range(rng.randint(1, 30))) for _ in range(n_par)]
        docs.append(rng.choice(["\n", "\n\n", "\r\n", "\u2028"]).join(pars))
    return docs


def _write_corpus(folder, kind: str) -> str:
    rng = random.Random(kind)
    for lang in ("el", "en", "de"):
        docs = _long_corpus(rng, lang, 40)
        if kind == "jsonl":
            lines = [json.dumps({"text": t, "id": i}, ensure_ascii=i % 2 == 0) for i, t in enumerate(docs)]
            (folder / f"{lang}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        elif kind == "txt-lines":  # one document per line: a long line holds \u2028 and \r breaks
            (folder / f"{lang}.txt").write_text("\n".join(t.replace("\n", " ") for t in docs) + "\n", encoding="utf-8")
        else:  # one document per file
            (folder / lang).mkdir()
            for i, t in enumerate(docs):
                (folder / lang / f"{i:03d}.txt").write_text(t, encoding="utf-8")
    return f"{kind.split('-')[0]}:{folder}"


def _small_pieces(monkeypatch, long_bytes: int = 600) -> None:
    from neuronmoe.data import prepare

    monkeypatch.setattr(longtext, "LONG_TEXT_BYTES", long_bytes)
    monkeypatch.setattr(longtext, "CHUNK_BYTES", 97)
    monkeypatch.setattr(longdoc, "RUN_CHARS", 50)
    monkeypatch.setattr(longdoc, "TEXT_CHUNK", 80)
    monkeypatch.setattr(prepare, "DEDUP_WINDOW", 7)


@pytest.mark.parametrize("kind, num_proc", [("jsonl", 1), ("jsonl", 2), ("txt-lines", 1), ("txt-files", 1)])
def test_prepare_data_gives_a_document_in_pieces_what_it_gives_it_whole(tmp_path, monkeypatch, tiny_model_dir, kind,
                                                                       num_proc):
    """Every file of data/ (train, replay, held-out, samples) and every count are the same whether the long documents
    are read whole or in pieces (sentences spilled, dedup in windows, text written in chunks, pool on disk)."""
    from neuronmoe.data.prepare import prepare_data
    from neuronmoe.data.settings import DataSettings

    (tmp_path / "src").mkdir()
    source = _write_corpus(tmp_path / "src", kind)
    out = {}
    for mode in ("whole", "pieces"):
        if mode == "pieces":
            _small_pieces(monkeypatch)
        cfg = DataSettings.resolve(environ={}, new_langs=["el"], old_langs=["en"], neg_langs=["de"], source=source,
                                   num_samples=20, udhr=False, progress=False, model=str(tiny_model_dir),
                                   output_dir=str(tmp_path / mode), num_proc=num_proc, force=True)
        m = prepare_data(cfg.replace(sample_pool=40, batch_docs=8, max_heldout_docs=4))
        data = tmp_path / mode / "data"
        out[mode] = ({p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("*.jsonl"))}, m["counts"])
    assert out["pieces"] == out["whole"]
    files = out["whole"][0]
    assert max(len(line) for b in files.values() for line in b.splitlines()) > 600  # long documents were written
    assert files["heldout/el.jsonl"] and files["train/el.jsonl"] and files["replay/en.jsonl"]


def test_process_language_takes_long_documents_held_as_strings(tiny_model_dir):
    """A ``datasets`` row over the limit (``StrText``, already in memory) is analysed in chunks too: same result
    as its paragraphs given as a list."""
    from neuronmoe.data.longdoc import LongDocument
    from neuronmoe.data.prepare import make_token_counter, process_language, start_pool
    from neuronmoe.data.settings import DataSettings
    from neuronmoe.models import load_tokenizer

    docs = _long_corpus(random.Random(3), "el", 30)
    cfg = DataSettings.resolve(environ={}, new_langs=["el"], old_langs=["en"], neg_langs=[], source="bundled",
                               num_samples=10, progress=False).replace(batch_docs=6, sample_pool=20)
    count = make_token_counter(load_tokenizer(str(tiny_model_dir)))
    whole = process_language("el", iter([paragraphs(t) for t in docs]), cfg, count)
    lazy = process_language("el", iter([LongDocument(longtext.StrText(t)) for t in docs]), cfg, count)
    assert (lazy.docs, lazy.heldout, lazy.samples, lazy.counts) == (whole.docs, whole.heldout, whole.samples, whole.counts)
    pool = start_pool(2, count)  # chunks with such a document are analysed in this process, the others in workers
    try:
        mixed = [LongDocument(longtext.StrText(t)) if i in (3, 20) else paragraphs(t) for i, t in enumerate(docs)]
        both = process_language("el", iter(mixed), cfg, count, pool=pool)
    finally:
        pool.terminate()
        pool.join()
    assert (both.docs, both.heldout, both.samples, both.counts) == (whole.docs, whole.heldout, whole.samples, whole.counts)


@pytest.mark.parametrize("max_tokens", [None, 20_000])
def test_packing_gives_a_document_in_pieces_what_it_gives_it_whole(tmp_path, monkeypatch, tiny_model_dir, max_tokens):
    """Blocks, flags and per-source counts are the same whether a long document is tokenized in its segment or by
    the packer piece by piece (straight into the block writer), with and without a token budget."""
    from neuronmoe.models import load_tokenizer
    from neuronmoe.training.data import NEW, OLD, Source, build_packed

    tok = load_tokenizer(str(tiny_model_dir))
    (tmp_path / "src").mkdir()
    _write_corpus(tmp_path / "src", "jsonl")
    sources = [Source(str(tmp_path / "src" / "el.jsonl"), "el", NEW), Source(str(tmp_path / "src" / "en.jsonl"), "en", OLD)]
    got = {}
    for mode in ("whole", "pieces"):
        if mode == "pieces":
            _small_pieces(monkeypatch, long_bytes=2000)
        d = build_packed(sources, tok, 64, 7, cache_dir=tmp_path / mode, max_tokens=max_tokens, progress=False)
        got[mode] = (np.asarray(d.input_ids).tobytes(), np.asarray(d.lang_flags).tobytes(), d.meta["counts"],
                     [{k: v for k, v in s.items()} for s in d.meta["sources"]])
    assert got["pieces"] == got["whole"]


def test_heldout_scoring_and_similarity_read_only_the_head_of_a_long_document(tmp_path, monkeypatch, tiny_model_dir):
    from neuronmoe.models import load_tokenizer
    from neuronmoe.similarity.capture import text_head
    from neuronmoe.training.perplexity import token_blocks
    from neuronmoe.utils.io import read_texts

    tok = load_tokenizer(str(tiny_model_dir))
    texts = [long_text(2 * tk.PIECE_CHARS + 11), "Μια μικρή πρόταση.", long_text(3 * tk.PIECE_CHARS)]
    f = tmp_path / "heldout.jsonl"
    f.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    monkeypatch.setattr(longtext, "LONG_TEXT_BYTES", 1000)
    lazy = read_texts(f, long_text=True)
    assert [type(t).__name__ for t in lazy] == ["FileText", "str", "FileText"] and read_texts(f) == texts
    for max_tokens in (None, 50, 30_000):
        assert token_blocks(lazy, tok, 64, max_tokens) == token_blocks(texts, tok, 64, max_tokens)
    head = text_head(tok, lazy[0], 100)
    assert len(head) < len(texts[0]) and texts[0].startswith(head)
    assert tok(head, truncation=True, max_length=100)["input_ids"] == tok(texts[0], truncation=True, max_length=100)["input_ids"]


BOUNDED = textwrap.dedent("""
    import json, random, resource, sys
    from pathlib import Path
    from neuronmoe.models import load_tokenizer
    from neuronmoe.data.prepare import prepare_data
    from neuronmoe.data.settings import DataSettings
    from neuronmoe.training.data import NEW, Source, build_packed

    model, root, sizes = sys.argv[1], Path(sys.argv[2]), [float(x) for x in sys.argv[3:]]
    tok = load_tokenizer(model)
    words = "Το ποτάμι περνά δίπλα από τον παλιό μύλο και η πέτρα μένει".split()
    rng = random.Random(0)
    def sent(i):
        return " ".join(rng.choice(words) for _ in range(8)).capitalize() + f" {i}."
    names = [f"long{mb:g}" for mb in sizes]
    for name, long in zip(names, sizes):
        d = root / name
        d.mkdir()
        lines = [{"text": " ".join(sent(i * 10 + k) for k in range(5))} for i in range(300)]
        if long:
            parts, n, i = [], 0, 10**6
            while n < long * 1e6:
                parts.append(sent(i)); n += len(parts[-1].encode()) + 1; i += 1
            lines.insert(0, {"text": " ".join(parts)})
        (d / "el.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\\n" for r in lines), encoding="utf-8")
        (d / "en.jsonl").write_text("".join(json.dumps({"text": f"An English sentence {i}."}) + "\\n" for i in range(300)))
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"base": peak()}
    for name in names:
        cfg = DataSettings.resolve(environ={}, new_langs=["el"], old_langs=["en"], neg_langs=[], udhr=False, progress=False,
                                   source=f"jsonl:{root / name}", num_samples=20, model=model,
                                   output_dir=str(root / name / "out"), force=True)
        prepare_data(cfg, tokenizer=tok)
        out[f"prepare_{name}"] = peak()
    for name in names:
        build_packed([Source(str(root / name / "el.jsonl"), "el", NEW)], tok, 256, 1, cache_dir=root / name / "c",
                     progress=False)
        out[f"pack_{name}"] = peak()
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_a_long_line_costs_little_memory_in_prepare_data_and_packing(tmp_path, tiny_model_dir):
    """Single-line documents of 4 and then 16 MB: prepare-data and packing grew the process by ~11 and ~14 bytes per
    byte of text (+130 and +170 MB for the 12 MB more); in pieces only by the dedup keys of its sentences (16-32
    bytes each) and what one batch of pieces needs, which does not grow with the document."""
    r = subprocess.run([sys.executable, "-c", BOUNDED, str(tiny_model_dir), str(tmp_path), "4", "16"], capture_output=True,
                       text=True, check=True)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["prepare_long16"] - m["prepare_long4"] < 20, m
    assert m["pack_long16"] - max(m["pack_long4"], m["prepare_long16"]) < 20, m
