"""UDHR cloze items whose answer only the language can decide, and the two baselines reported beside every model.

An item blanks one word of a UDHR paragraph (at least ``min_chars`` letters, no digits); the context is up to
``prefix_words`` words before it and every choice is a candidate word followed by the next ``suffix_words`` words
of the paragraph. The wrong options are words of the same language that never occur in the item's paragraph (in
any spelling), in the answer's case pattern, of a similar length, and from the answer's own *frequency band*:

* every candidate word is counted in the language's training text (``freqs``). When enough candidates are exactly
  as frequent as the answer (rare words: counted 0, 1, 2 times), the wrong options are drawn from them;
* otherwise they are the nearest strictly more frequent and strictly less frequent candidates, and the number
  taken from above the answer runs through every value 0 .. ``n_choices - 1`` equally often (a shuffled cycle),
  so the answer is the most frequent option in exactly ``1 / n_choices`` of these items;
* among the band, the candidates closest in length to the answer are taken (a blank whose band cannot be filled
  is skipped).

Without this, wrong options drawn uniformly from the words absent from the paragraph skew rare while answers skew
frequent, and a model that knows only word frequencies beats chance (30-34 % at 4 choices). Each item records
two baselines on itself: ``chance`` (``1 / n_choices``) and ``unigram``, the expected score of a guesser that
picks the option most frequent in the training text (ties split evenly).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from neuronmoe.errors import ConfigError, InputError

_WORD = re.compile(r"^(\W*)(\w+)(\W*)$")


def core(word: str) -> tuple[str, str, str] | None:
    """(leading punctuation, word, trailing punctuation) for a plain word, else None."""
    m = _WORD.match(word)
    if not m:
        return None
    w = m.group(2)
    if any(ch.isdigit() or ch == "_" for ch in w):
        return None
    return m.group(1), w, m.group(3)


def word_counts(texts: Iterable[str], max_chars: int = 0) -> Counter:
    """Counts of plain words (casefolded) in ``texts``; at most ``max_chars`` characters are read (0: all)."""
    counts: Counter = Counter()
    seen = 0
    for text in texts:
        for w in str(text).split():
            c = core(w)
            if c is not None:
                counts[c[1].casefold()] += 1
        seen += len(text)
        if 0 < max_chars <= seen:
            break
    return counts


def unigram_score(options: list[str], gold: int, freqs: Mapping[str, int]) -> float:
    """Expected score of the guesser that picks the option most frequent in ``freqs`` (ties split evenly)."""
    f = [freqs.get(o.casefold(), 0) for o in options]
    top = [i for i, x in enumerate(f) if x == max(f)]
    return 1.0 / len(top) if gold in top else 0.0


def match_case(word: str, answer: str) -> str:
    """``word`` in the case pattern of ``answer``: UPPER, Capitalised or lower (scripts without case: as is)."""
    if len(answer) > 1 and answer.isupper():
        return word.upper()
    base = word.lower()
    if answer[:1].isupper():
        return base[:1].upper() + base[1:]
    return base


@dataclass
class _Vocabulary:
    """The blanks of every paragraph and the words distractors come from."""

    slots: list[tuple[str, list[str], list[int]]] = field(default_factory=list)  # (paragraph id, words, blank positions)
    forms: dict[str, str] = field(default_factory=dict)  # casefolded word -> its first spelling
    where: dict[str, set[str]] = field(default_factory=dict)  # casefolded word -> ids of the paragraphs holding it


def _vocabulary(paras: list[dict[str, Any]], min_chars: int, rng: random.Random) -> _Vocabulary:
    v = _Vocabulary()
    for p in paras:
        words = str(p["text"]).split()
        pos = []
        for i, w in enumerate(words):
            c = core(w)
            if c is None or len(c[1]) < min_chars:
                continue
            v.where.setdefault(c[1].casefold(), set()).add(str(p.get("id")))
            v.forms.setdefault(c[1].casefold(), c[1])
            if i >= min(3, len(words) - 1):
                pos.append(i)
        rng.shuffle(pos)
        v.slots.append((str(p.get("id")), words, pos))
    return v


class _Bands:
    """Distractors from the answer's frequency band (module docstring).

    Words equally frequent as the answer (in practice: rare ones, counted 0, 1, 2 times) form its band when there
    are enough of them: the guesser then scores exactly chance on the item. Otherwise ``r`` of the wrong options are
    the strictly more frequent words nearest to the answer and the rest the strictly less frequent ones nearest
    to it, ``r`` cycling evenly through 0 .. ``k``, so that the answer is the most frequent option in exactly one
    item in ``k + 1``."""

    def __init__(self, vocab: _Vocabulary, freqs: Mapping[str, int], n_choices: int, rng: random.Random):
        self.vocab, self.freqs, self.k, self.rng = vocab, freqs, n_choices - 1, rng
        self.order = sorted(vocab.forms, key=lambda w: (freqs.get(w, 0), w))
        self.counts = [freqs.get(w, 0) for w in self.order]
        self.window = 2 * self.k
        self._above: list[int] = []

    def _scan(self, indices: Iterable[int], ok: Any, limit: int | None) -> list[str]:
        out: list[str] = []
        for i in indices:
            if limit is not None and len(out) >= limit:
                break
            if ok(self.order[i]):
                out.append(self.order[i])
        return out

    def _groups(self, low: str, pid: str, near: bool) -> tuple[list[str], list[str], list[str]]:
        """Eligible words (not in the paragraph, not the answer, within the length band when ``near``) that are
        more frequent than the answer (nearest first), as frequent, and less frequent (nearest first)."""
        from bisect import bisect_left, bisect_right

        f = self.freqs.get(low, 0)
        lo, hi = bisect_left(self.counts, f), bisect_right(self.counts, f)

        def ok(w: str) -> bool:
            return w != low and pid not in self.vocab.where[w] and (not near or abs(len(w) - len(low)) <= max(2, len(low) // 3))

        return (self._scan(range(hi, len(self.order)), ok, self.window), self._scan(range(lo, hi), ok, None),
                self._scan(range(lo - 1, -1, -1), ok, self.window))

    def pick(self, low: str, pid: str) -> list[str] | None:
        """``k`` distractors (casefolded) for answer ``low`` of paragraph ``pid``; None if its band cannot be filled."""
        for near in (True, False):  # the length band first; all lengths only for tiny vocabularies
            above, same, below = self._groups(low, pid, near)
            if len(same) >= self.k:
                return self._closest(same, low, self.k)
            if len(above) >= self.k and len(below) >= self.k:
                if not self._above:
                    self._above = self.rng.sample(range(self.k + 1), self.k + 1)
                r = self._above.pop()
                return self._closest(above, low, r) + self._closest(below, low, self.k - r)
        return None

    def _closest(self, words: list[str], low: str, n: int) -> list[str]:
        """``n`` of ``words`` closest in length to the answer (ties in random order)."""
        return sorted(self.rng.sample(words, len(words)), key=lambda w: abs(len(w) - len(low)))[:n]


def build_cloze_items(
    paragraphs: list[dict[str, Any]],
    n_items: int = 200,
    n_choices: int = 4,
    prefix_words: int = 10,
    suffix_words: int = 2,
    min_chars: int = 4,
    seed: int = 1234,
    freqs: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Cloze items ``{"id", "para_id", "query", "choices", "gold", "answer", "baselines"}`` from one language.

    ``freqs``: word counts of the language's training text (:func:`word_counts`); None: the paragraphs' own.
    Deterministic in ``seed``. Paragraphs are used round-robin (one blank each, then a second blank each, ...)
    until ``n_items`` (0: until every eligible blank is used).
    """
    if n_choices < 2:
        raise ConfigError("cloze_choices: need at least 2 choices")
    rng = random.Random(seed)
    paras = [p for p in paragraphs if str(p.get("text", "")).split()]
    if len(paras) < 2:
        raise InputError("cloze: need at least 2 non-empty paragraphs (distractors come from other paragraphs)")
    vocab = _vocabulary(paras, min_chars, rng)
    if len(vocab.forms) < n_choices:
        raise InputError(f"cloze: only {len(vocab.forms)} distinct words of >= {min_chars} letters; need {n_choices}")
    freqs = freqs if freqs is not None else word_counts(p["text"] for p in paras)
    bands = _Bands(vocab, freqs, n_choices, rng)
    items: list[dict[str, Any]] = []
    rnd = 0
    while (n_items <= 0 or len(items) < n_items) and any(len(s[2]) > rnd for s in vocab.slots):
        for pid, words, pos in vocab.slots:
            if 0 < n_items <= len(items):
                break
            if len(pos) > rnd:
                item = _item(pid, words, pos[rnd], bands, (prefix_words, suffix_words), rng)
                if item is not None:
                    items.append(item)
        rnd += 1
    if not items:
        raise InputError("cloze: no item could be built (paragraphs too short?)")
    return items


def _item(pid: str, words: list[str], i: int, bands: _Bands, widths: tuple[int, int], rng: random.Random) -> dict | None:
    """The item blanking ``words[i]``, or None (the answer is visible around the blank, or its band is empty)."""
    prefix_words, suffix_words = widths
    lead, answer, trail = core(words[i])  # type: ignore[misc]
    low = answer.casefold()
    context = words[max(0, i - prefix_words): i] + words[i + 1: i + 1 + suffix_words]
    if any((c := core(w)) is not None and c[1].casefold() == low for w in context):
        return None  # the answer is visible in the context: copying it would beat chance
    picked = bands.pick(low, pid)
    if picked is None:
        return None
    k = len(picked) + 1
    gold = rng.randrange(k)
    options = [match_case(bands.vocab.forms[w], answer) for w in picked]
    options = options[:gold] + [answer] + options[gold:]
    suffix = " ".join(words[i + 1: i + 1 + suffix_words])
    return {"id": f"{pid}#{i}", "para_id": pid, "query": " ".join(words[max(0, i - prefix_words): i]),
            "choices": [f"{lead}{w}{trail}" + (f" {suffix}" if suffix else "") for w in options], "gold": gold,
            "answer": answer, "baselines": {"chance": 1.0 / k, "unigram": unigram_score(options, gold, bands.freqs)}}


def cloze_summary(items: list[dict[str, Any]]) -> dict[str, float]:
    """Chance, the unigram guesser's accuracy and the mean answer-minus-distractor length (characters) of items."""
    n = max(len(items), 1)
    gap = 0.0
    for it in items:
        lens = [len(c.split()[0]) for c in it["choices"]]
        gap += lens[it["gold"]] - (sum(lens) - lens[it["gold"]]) / (len(lens) - 1)
    return {"items": len(items), "chance": sum(it["baselines"]["chance"] for it in items) / n,
            "unigram": sum(it["baselines"]["unigram"] for it in items) / n, "answer_minus_distractor_chars": gap / n}
