"""Memory stays bounded for any document (issue 24, item 5): texts longer than ``PIECE_CHARS`` are tokenized in
pieces cut before whitespace, with the ids (and counts) of the whole text, and without the tokenizer's
per-token memory for the whole text at once."""
from __future__ import annotations

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
