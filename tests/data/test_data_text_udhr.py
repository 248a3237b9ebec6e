"""Pure helpers: cleaning machine-generated text, sentence splitting, dedup keys, UDHR parsing."""
from __future__ import annotations

import pytest

from neuronmoe.data.text import (
    clean_generated,
    dedup_key,
    dedup_keys,
    join_sentences,
    normalize,
    paragraphs,
    split_sentences,
    strip_markdown,
)
from neuronmoe.data.udhr import load_udhr, parse_udhr_html

GENERATED = """Of course. Here is 30,000 words of varied text, as you asked.

### **1. Scientific Disciplines**

Physics: Probing the Nature of Reality

The universe yields its secrets to **persistent** inquiry. Physics is *old*.
*   **Ionic bonds:** Electrons move from one atom to another.
---
**A bold heading line**
Short line without an end
"""


def test_clean_generated_drops_preamble_headings_and_markers():
    paras = clean_generated(GENERATED)
    assert paras == [
        "The universe yields its secrets to persistent inquiry. Physics is old.",
        "Ionic bonds: Electrons move from one atom to another.",
    ]
    assert clean_generated("A first sentence.\nA second one.", drop_preamble=False) == ["A first sentence.", "A second one."]
    assert clean_generated("A first sentence.\nA second one.") == ["A second one."]


def test_strip_markdown_keeps_text():
    assert strip_markdown("1. **Bold** and __under__ and *it*.") == "Bold and under and it."
    assert strip_markdown("2 * 3 = 6.") == "2 * 3 = 6."


@pytest.mark.parametrize(
    "text,script,code,expected",
    [
        ("Hello there. This is Dr. Smith? Yes! J. R. Tolkien wrote. Ok.", "Latn", "en",
         ["Hello there.", "This is Dr. Smith?", "Yes!", "J. R. Tolkien wrote.", "Ok."]),
        ("It costs 3.5 euros. e.g. this stays. Next one.", "Latn", "en",
         ["It costs 3.5 euros. e.g. this stays.", "Next one."]),
        ('He said "Stop." Then left.', "Latn", "en", ['He said "Stop."', "Then left."]),
        ("Τι κάνεις; Καλά. Ωραία!", "Grek", "el", ["Τι κάνεις;", "Καλά.", "Ωραία!"]),
        ("Qué tal; bien. Adiós.", "Latn", "es", ["Qué tal; bien.", "Adiós."]),
        ("これは文です。これも文だ！「引用。」次。", "Jpan", "ja", ["これは文です。", "これも文だ！", "「引用。」", "次。"]),
        ("我们来了。你好吗？好", "Hans", "zh", ["我们来了。", "你好吗？", "好"]),
    ],
)
def test_split_sentences(text, script, code, expected):
    assert split_sentences(text, script, code) == expected


def test_join_sentences_uses_no_space_for_cjk():
    assert join_sentences(["你好。", "再见。"], "Hans") == "你好。再见。"
    assert join_sentences(["A.", "B."], "Latn") == "A. B."


def test_dedup_key_ignores_case_width_and_whitespace_only():
    assert dedup_key("Hello  world.") == dedup_key(" hello world. ")
    assert dedup_key("ＡＢＣ") == dedup_key("abc")
    assert dedup_key("Hello world.") != dedup_key("Hello world!")
    assert len(dedup_key("x")) == 8


# characters where the fast paths could differ from the definitions: every kind of whitespace and
# line break, combining marks (composition across a line break), compatibility forms, case folds
# that change length (ß, İ, ﬁ), and a final sigma
_TRICKY = list("abz ΑΒΓάέΣς\u0301\u0308\u0345 \t\xa0\u2000\u3000\u202f\x1f\r\n\x0b\x0c\x1c\x85\u2028\u2029ﬁ①ＡẞßİｶﾞÅ") + [
    "\r\n", "e\u0301", "\u1100\u1161"]


def _random_texts(n: int, seed: int, max_len: int = 24) -> list[str]:
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(_TRICKY) for _ in range(rng.randint(0, max_len))) for _ in range(n)]


def test_paragraphs_equal_normalize_line_by_line():
    for text in _random_texts(20000, seed=1):
        want = [t for t in (normalize(x) for x in text.splitlines()) if t]
        assert paragraphs(text) == want, repr(text)


def test_dedup_keys_equal_dedup_key_one_by_one():
    texts = _random_texts(30000, seed=2, max_len=12)
    for i in range(0, len(texts), 3):  # small groups: a group with a line break takes the slow path
        group = texts[i:i + 3]
        assert dedup_keys(group) == b"".join(dedup_key(t) for t in group), repr(group)
    no_breaks = [t for t in texts if len(t.splitlines()) <= 1 and not t.endswith(("\r", "\n"))]
    assert dedup_keys(no_breaks) == b"".join(dedup_key(t) for t in no_breaks)
    assert dedup_keys([]) == b""


def test_parse_udhr_html_ids_articles_and_nested_paragraphs():
    html = (
        "<html><body><h1>T</h1><header><h2>P</h2><p>One &amp; two.</p><p>Three.</p></header>"
        '<article data-number="1"><h2>Article 1</h2><p>A <b>bold</b>\n word.</p></article>'
        '<article data-number="2"><ol><li><p>First.</p></li><li><p>Second.</p></li></ol></article>'
        "<p>outside</p></body></html>"
    )
    paras = parse_udhr_html(html)
    assert [p["id"] for p in paras] == ["0-1", "0-2", "1-1", "2-1", "2-2"]
    assert [p["article"] for p in paras] == [0, 0, 1, 2, 2]
    assert paras[0]["text"] == "One & two."
    assert paras[2]["text"] == "A bold word."


def test_load_udhr_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="xyz"):
        load_udhr("xyz", tmp_path)
    (tmp_path / "empty.html").write_text("<html><body><h1>x</h1></body></html>")
    with pytest.raises(ValueError, match="empty.html: no paragraphs"):
        load_udhr("empty", tmp_path)
