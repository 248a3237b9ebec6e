"""The offline ``local`` suite: lm-eval tasks generated from the bundled corpora.

* ``udhr_cloze_<lang>``: 4-way multiple choice over UDHR paragraphs
  (``$OUTPUT_DIR/data/udhr/<lang>.jsonl``), ``cloze_items`` per language (0: every eligible blank).
  One word (at least ``cloze_min_chars`` letters,
  no digits) is blanked; the context is up to ``cloze_prefix_words`` words before it; each
  choice is a candidate word followed by the next ``cloze_suffix_words`` words of the
  paragraph, so the words after the blank also judge the candidate. Distractors are distinct
  words of the same language drawn from *other* paragraphs, preferring similar lengths, never
  equal (case-insensitively) to the answer; the gold position is uniform. Chance = 1/choices.
* ``heldout_ppl_<lang>``: ``loglikelihood_rolling`` over the held-out documents
  (``$OUTPUT_DIR/data/heldout/<lang>.jsonl``; all of them, whole, by default; ``heldout_docs`` and
  ``heldout_max_chars`` cap them); metrics word_perplexity, byte_perplexity, bits_per_byte. The
  report's interval for bits per byte is a bootstrap over these documents.

Everything lands in ``$OUTPUT_DIR/eval/tasks/`` (YAMLs + ``data/*.jsonl`` + manifest) with
absolute ``data_files`` paths, since lm-eval resolves relative ones against the working
directory. The folder is rebuilt only when its inputs or sizes change.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from neuronmoe.evaluation.paper_tasks import metric_list

_WORD = re.compile(r"^(\W*)(\w+)(\W*)$")

DEFAULT_SIZES: dict[str, int] = {  # the same as eval_suites.yaml's local suite (a test checks)
    "cloze_items": 200,
    "cloze_choices": 4,
    "cloze_prefix_words": 10,
    "cloze_suffix_words": 2,
    "cloze_min_chars": 4,
    "heldout_docs": 0,
    "heldout_max_chars": 0,
    "seed": 1234,
}


def _core(word: str) -> tuple[str, str, str] | None:
    """(leading punctuation, word, trailing punctuation) for a plain word, else None."""
    m = _WORD.match(word)
    if not m:
        return None
    core = m.group(2)
    if any(ch.isdigit() or ch == "_" for ch in core):
        return None
    return m.group(1), core, m.group(3)


def build_cloze_items(
    paragraphs: list[dict[str, Any]],
    n_items: int = 200,
    n_choices: int = 4,
    prefix_words: int = 10,
    suffix_words: int = 2,
    min_chars: int = 4,
    seed: int = 1234,
) -> list[dict[str, Any]]:
    """Cloze items ``{"id", "para_id", "query", "choices", "gold", "answer"}`` from one language.

    Deterministic in ``seed``. Paragraphs are used round-robin (one blank each, then a second
    blank each, ...) until ``n_items`` (0: until every eligible blank is used); raises if the
    language has too few distinct words for ``n_choices - 1`` distractors.
    """
    if n_choices < 2:
        raise ValueError("cloze: need at least 2 choices")
    rng = random.Random(seed)
    paras = [p for p in paragraphs if str(p.get("text", "")).split()]
    if len(paras) < 2:
        raise ValueError("cloze: need at least 2 non-empty paragraphs (distractors come from other paragraphs)")
    # candidate blank positions per paragraph, and the distractor pool
    slots: list[tuple[dict[str, Any], list[str], list[int]]] = []
    forms: dict[str, str] = {}  # casefolded word -> its first spelling
    vocab: dict[str, set[str]] = {}  # word -> ids of paragraphs containing it (any case)
    for p in paras:
        words = str(p["text"]).split()
        pos = []
        for i, w in enumerate(words):
            c = _core(w)
            if c is None or len(c[1]) < min_chars:
                continue
            vocab.setdefault(c[1].casefold(), set()).add(str(p.get("id")))
            forms.setdefault(c[1].casefold(), c[1])
            if i >= min(3, len(words) - 1):
                pos.append(i)
        rng.shuffle(pos)
        slots.append((p, words, pos))
    pool = sorted(vocab)  # casefolded
    if len(pool) < n_choices:
        raise ValueError(f"cloze: only {len(pool)} distinct words of >= {min_chars} letters; need {n_choices}")
    items: list[dict[str, Any]] = []
    rnd = 0
    def full() -> bool:
        return n_items > 0 and len(items) >= n_items

    while not full() and any(len(s[2]) > rnd for s in slots):
        for p, words, pos in slots:
            if full():
                break
            if len(pos) <= rnd:
                continue
            i = pos[rnd]
            lead, answer, trail = _core(words[i])  # type: ignore[misc]
            pid = str(p.get("id"))
            low = answer.casefold()
            context = words[max(0, i - prefix_words) : i] + words[i + 1 : i + 1 + suffix_words]
            if any((c := _core(w)) is not None and c[1].casefold() == low for w in context):
                continue  # the answer is visible in the context: copying it would beat chance
            # distractors take the answer's case pattern, so that case is no cue
            cands = [_match_case(forms[w], answer) for w in pool if pid not in vocab[w] and w != low]
            near = [w for w in cands if abs(len(w) - len(answer)) <= max(2, len(answer) // 3)]
            src = near if len(near) >= n_choices - 1 else cands
            picked: list[str] = []
            seen = {low}
            for w in rng.sample(src, len(src)):
                if w.casefold() not in seen:
                    picked.append(w)
                    seen.add(w.casefold())
                if len(picked) == n_choices - 1:
                    break
            if len(picked) < n_choices - 1:
                continue
            gold = rng.randrange(n_choices)
            options = picked[:gold] + [answer] + picked[gold:]
            suffix = " ".join(words[i + 1 : i + 1 + suffix_words])
            query = " ".join(words[max(0, i - prefix_words) : i])
            choices = [f"{lead}{w}{trail}" + (f" {suffix}" if suffix else "") for w in options]
            items.append(
                {"id": f"{pid}#{i}", "para_id": pid, "query": query, "choices": choices, "gold": gold, "answer": answer}
            )
        rnd += 1
    if not items:
        raise ValueError("cloze: no item could be built (paragraphs too short?)")
    return items


def _match_case(word: str, answer: str) -> str:
    """``word`` in the case pattern of ``answer``: UPPER, Capitalised or lower (scripts without case: as is)."""
    if len(answer) > 1 and answer.isupper():
        return word.upper()
    base = word.lower()
    if answer[:1].isupper():
        return base[:1].upper() + base[1:]
    return base


def select_heldout(docs: list[dict[str, Any]], n_docs: int = 0, max_chars: int = 0) -> list[dict[str, str]]:
    """The first ``n_docs`` (0: all) non-empty documents, each cut at a word boundary to ``max_chars`` (0: whole)."""
    out = []
    for d in docs:
        text = " ".join(str(d.get("text", "")).split())
        if not text:
            continue
        if max_chars > 0 and len(text) > max_chars:
            cut = text[: max_chars + 1]
            sp = cut.rfind(" ")
            text = cut[:sp] if sp > max_chars // 2 else text[:max_chars]
        out.append({"text": text})
        if 0 < n_docs <= len(out):
            break
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from neuronmoe.utils.io import iter_jsonl

    return [row for _, row in iter_jsonl(path)]


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def cloze_yaml(lang: str, data_file: Path, n_choices: int) -> str:
    return "\n".join([
        "# Generated by neuronmoe evaluate (local suite); data_files is absolute on purpose.",
        f"task: udhr_cloze_{lang}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data_file))}",
        "test_split: test",
        "output_type: multiple_choice",
        'doc_to_text: "{{query}}"',
        "doc_to_choice: choices",
        "doc_to_target: gold",
        *metric_list("acc", "acc_norm"),
        "metadata:",
        "  version: 1.0",
        f"  chance: {1.0 / n_choices}",
        "",
    ])


def ppl_yaml(lang: str, data_file: Path) -> str:
    return "\n".join([
        "# Generated by neuronmoe evaluate (local suite); data_files is absolute on purpose.",
        f"task: heldout_ppl_{lang}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data_file))}",
        "test_split: test",
        "output_type: loglikelihood_rolling",
        'doc_to_text: ""',
        'doc_to_target: "{{text}}"',
        "metric_list:",
        "  - metric: word_perplexity",
        "    aggregation: weighted_perplexity",
        "    higher_is_better: false",
        "  - metric: byte_perplexity",
        "    aggregation: weighted_perplexity",
        "    higher_is_better: false",
        "  - metric: bits_per_byte",
        "    aggregation: bits_per_byte",
        "    higher_is_better: false",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def build_local_tasks(
    output_dir: str | Path, languages: list[str], sizes: dict[str, Any] | None = None, force: bool = False
) -> Path:
    """Generate (or reuse) the local suite under ``<output_dir>/eval/tasks``; returns that folder."""
    from neuronmoe.utils import Manifest, load_manifest, sha256_file, write_manifest
    from neuronmoe.utils.io import atomic_write_text
    from neuronmoe.utils.manifest import describe_files

    root = Path(output_dir).resolve()
    tasks_dir = root / "eval" / "tasks"
    sz = dict(DEFAULT_SIZES)
    for k, v in (sizes or {}).items():
        if k not in DEFAULT_SIZES:
            raise ValueError(f"--local-sizes: unknown key {k!r}; known: {', '.join(DEFAULT_SIZES)}")
        sz[k] = int(v)
    inputs: dict[str, Any] = {}
    missing = []
    for lang in languages:
        for kind in ("udhr", "heldout"):
            p = root / "data" / kind / f"{lang}.jsonl"
            if not p.exists():
                missing.append(str(p))
            else:
                inputs[f"data/{kind}/{lang}.jsonl"] = sha256_file(p)
    if missing:
        raise FileNotFoundError(
            "the local suite needs the prepare-data outputs: missing " + ", ".join(missing)
            + " (run `neuronmoe prepare-data` with these languages first)"
        )
    config = {"languages": list(languages), "sizes": sz, "root": str(root)}
    if not force and (tasks_dir / "manifest.json").exists():
        try:
            old = load_manifest(tasks_dir)
            if old.get("inputs") == inputs and old.get("config") == config:
                return tasks_dir
        except (ValueError, FileNotFoundError):
            pass
    written: list[Path] = []
    counts: dict[str, Any] = {}
    for lang in languages:
        paras = _read_jsonl(root / "data" / "udhr" / f"{lang}.jsonl")
        items = build_cloze_items(
            paras, n_items=sz["cloze_items"], n_choices=sz["cloze_choices"], prefix_words=sz["cloze_prefix_words"],
            suffix_words=sz["cloze_suffix_words"], min_chars=sz["cloze_min_chars"], seed=sz["seed"],
        )
        docs = select_heldout(_read_jsonl(root / "data" / "heldout" / f"{lang}.jsonl"), sz["heldout_docs"], sz["heldout_max_chars"])
        if not docs:
            raise ValueError(f"data/heldout/{lang}.jsonl: no non-empty document")
        cz = tasks_dir / "data" / f"udhr_cloze_{lang}.jsonl"
        hp = tasks_dir / "data" / f"heldout_ppl_{lang}.jsonl"
        written += [atomic_write_text(cz, _jsonl(items)), atomic_write_text(hp, _jsonl(docs))]
        written.append(atomic_write_text(tasks_dir / f"udhr_cloze_{lang}.yaml", cloze_yaml(lang, cz, sz["cloze_choices"])))
        written.append(atomic_write_text(tasks_dir / f"heldout_ppl_{lang}.yaml", ppl_yaml(lang, hp)))
        counts[lang] = {"cloze_items": len(items), "heldout_docs": len(docs), "heldout_chars": sum(len(d["text"]) for d in docs)}
    # drop YAMLs of languages no longer asked for, so the index only knows current ones
    keep = {p.name for p in written}
    for p in list(tasks_dir.glob("*.yaml")) + list((tasks_dir / "data").glob("*.jsonl")):
        if p.name not in keep:
            p.unlink()
    write_manifest(tasks_dir, Manifest(stage="eval-tasks", config=config, inputs=inputs, counts=counts,
                                       files=describe_files(tasks_dir, written)))
    return tasks_dir
