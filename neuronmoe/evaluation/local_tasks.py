"""The offline ``local`` suite: lm-eval tasks generated from the prepare-data outputs.

* ``udhr_cloze_<lang>``: multiple choice over UDHR paragraphs (``$OUTPUT_DIR/data/udhr/<lang>.jsonl``),
  ``cloze_items`` per language (0: every eligible blank), built by :mod:`neuronmoe.evaluation.cloze`: wrong options
  from the answer's frequency and length band (frequencies from the language's training text, see
  :data:`FREQUENCY_SOURCES`), never words of the item's paragraph; every item carries its two baselines (chance,
  unigram-frequency guesser). ``acc`` decides (the options are length-matched); ``acc_norm`` is reported too.
* ``heldout_ppl_<lang>``: ``loglikelihood_rolling`` over the held-out documents
  (``$OUTPUT_DIR/data/heldout/<lang>.jsonl``; all of them, whole, by default; ``heldout_docs`` and
  ``heldout_max_chars`` cap them); metrics word_perplexity, byte_perplexity, bits_per_byte (each document's own
  tokens after one start token: ``runner.scoring_lm_class``). ``heldout_power_ratio`` (default 1; 0: off) then
  cuts every language's documents (in order) at the first prefix whose effective number of documents reaches
  that many times the smallest language's: the least powerful set, the new language's in the miniature run (28
  Greek documents), stays whole, and a larger one (266 English) keeps the documents that give it the same
  resolving power for bits per byte (:func:`balance_heldout`; docs/benchmarks.md, "Sizes").

Everything lands in ``$OUTPUT_DIR/eval/tasks/`` (YAMLs + ``data/*.jsonl`` + manifest with each language's
frequency source and baselines) with absolute ``data_files`` paths, since lm-eval resolves relative ones against
the working directory. The folder is rebuilt only when its inputs (frequency sources included) or sizes change.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuronmoe.errors import ConfigError, InputError, MissingInputError
from neuronmoe.evaluation.cloze import build_cloze_items, cloze_summary, word_counts
from neuronmoe.evaluation.paper_tasks import metric_list
from neuronmoe.layout import Layout

__all__ = ["DEFAULT_SIZES", "build_cloze_items", "build_local_tasks", "select_heldout"]

DEFAULT_SIZES: dict[str, int] = {  # the same as eval_suites.yaml's local suite (a test checks)
    "cloze_items": 200,
    "cloze_choices": 4,
    "cloze_prefix_words": 10,
    "cloze_suffix_words": 2,
    "cloze_min_chars": 4,
    "cloze_freq_chars": 20_000_000,
    "heldout_docs": 0,
    "heldout_max_chars": 0,
    "heldout_power_ratio": 1,
    "seed": 1234,
}

#: where a language's word frequencies come from, first found wins: its training text, its replay text (an old
#: language), its neuron-analysis sentences (same corpus); else the UDHR paragraphs themselves
FREQUENCY_SOURCES = ("train", "replay", "samples")


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


def effective_docs(docs: list[dict[str, str]]) -> float:
    """Kish's effective number of documents of a byte-weighted mean, ``(sum b)^2 / sum b^2`` (bits per byte weighs each
    document by its bytes, so a few long documents carry a set: its standard error shrinks as ``1 / sqrt`` of this)."""
    b = [len(d["text"].encode("utf-8")) for d in docs]
    return sum(b) ** 2 / sum(x * x for x in b) if b and any(b) else 0.0


def balance_heldout(docs: dict[str, list[dict[str, str]]], ratio: int) -> dict[str, list[dict[str, str]]]:
    """Each language's documents cut (in order) at the first prefix whose :func:`effective_docs` reaches ``ratio``
    times the smallest of the languages' whole sets (a set that never reaches it stays whole); ``ratio`` 0: unchanged."""
    if ratio <= 0 or not docs:
        return docs
    target = ratio * min(effective_docs(ds) for ds in docs.values())
    out = {}
    for lang, ds in docs.items():
        n, s1, s2 = len(ds), 0, 0
        for i, d in enumerate(ds):
            b = len(d["text"].encode("utf-8"))
            s1, s2 = s1 + b, s2 + b * b
            if s2 and s1 * s1 / s2 >= target - 1e-9:
                n = i + 1
                break
        out[lang] = ds[:n]
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


#: the smallest value of each size (0 = all, for the held-out caps); none has an upper bound
SIZE_MINIMA = {"cloze_items": 1, "cloze_choices": 2, "cloze_prefix_words": 1, "cloze_suffix_words": 0,
               "cloze_min_chars": 1, "cloze_freq_chars": 0, "heldout_docs": 0, "heldout_max_chars": 0, "seed": 0}


def resolve_sizes(sizes: dict[str, Any] | None) -> dict[str, int]:
    """:data:`DEFAULT_SIZES` with ``sizes`` applied; an unknown key or a value below its minimum (a negative
    count) is a :class:`ConfigError` naming the allowed range."""
    from neuronmoe.utils.checks import check_range

    sz = dict(DEFAULT_SIZES)
    for k, v in (sizes or {}).items():
        if k not in DEFAULT_SIZES:
            raise ConfigError(f"--local-sizes: unknown key {k!r}; known: {', '.join(DEFAULT_SIZES)}")
        sz[k] = int(check_range(f"--local-sizes {k}", int(v), SIZE_MINIMA.get(k, 0), None))
    return sz


def frequency_source(layout: Layout, lang: str) -> Path | None:
    """The file a language's word frequencies are counted in (:data:`FREQUENCY_SOURCES`); None: the UDHR itself."""
    return next((p for p in (layout.data_file(kind, lang) for kind in FREQUENCY_SOURCES) if p.is_file()), None)


def _inputs(layout: Layout, languages: list[str]) -> dict[str, str]:
    """``{path under $OUTPUT_DIR: sha256}`` of every file the suite is built from; raises when one is missing."""
    from neuronmoe.utils.checks import verify_inputs

    paths: list[Path] = []
    missing = []
    for lang in languages:
        for kind in ("udhr", "heldout"):
            p = layout.data_file(kind, lang)
            (paths if p.exists() else missing).append(p)
        freq = frequency_source(layout, lang)
        if freq is not None:
            paths.append(freq)
    # each file's sha256, checked against data/manifest.json (a replaced UDHR file is an error, not a score)
    digests = verify_inputs(layout.data, paths, what="the local evaluation suite")
    inputs = {layout.relative(p): digests.get(p.resolve().relative_to(layout.data.resolve()).as_posix()
                                              if p.resolve().is_relative_to(layout.data.resolve()) else str(p))
              for p in paths}
    if missing:
        raise MissingInputError(
            "the local suite needs the prepare-data outputs: missing " + ", ".join(map(str, missing))
            + " (run `neuronmoe prepare-data` with these languages first)"
        )
    return inputs


def _up_to_date(tasks_dir: Path, inputs: dict[str, str], config: dict[str, Any]) -> bool:
    from neuronmoe.utils import load_manifest

    if not (tasks_dir / "manifest.json").exists():
        return False
    try:
        old = load_manifest(tasks_dir)
    except (ValueError, FileNotFoundError):
        return False
    return old.get("inputs") == inputs and old.get("config") == config


def _heldout(layout: Layout, languages: list[str], sz: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """Every language's held-out documents: ``heldout_docs`` / ``heldout_max_chars``, then ``heldout_power_ratio``."""
    docs = {}
    for lang in languages:
        docs[lang] = select_heldout(_read_jsonl(layout.data_file("heldout", lang)), sz["heldout_docs"], sz["heldout_max_chars"])
        if not docs[lang]:
            raise InputError(f"data/heldout/{lang}.jsonl: no non-empty document")
    return balance_heldout(docs, sz["heldout_power_ratio"])


def _write_language(layout: Layout, lang: str, sz: dict[str, int],
                    docs: list[dict[str, str]]) -> tuple[list[Path], dict[str, Any]]:
    """The cloze and held-out task of one language (data + YAML); (files written, counts for the manifest)."""
    from neuronmoe.utils.io import atomic_write_text

    tasks_dir = layout.eval_tasks
    freq_file = frequency_source(layout, lang)
    freqs = word_counts((r.get("text", "") for r in _read_jsonl(freq_file)), sz["cloze_freq_chars"]) if freq_file else None
    items = build_cloze_items(
        _read_jsonl(layout.data_file("udhr", lang)), n_items=sz["cloze_items"], n_choices=sz["cloze_choices"],
        prefix_words=sz["cloze_prefix_words"], suffix_words=sz["cloze_suffix_words"], min_chars=sz["cloze_min_chars"],
        seed=sz["seed"], freqs=freqs,
    )
    cz = tasks_dir / "data" / f"udhr_cloze_{lang}.jsonl"
    hp = tasks_dir / "data" / f"heldout_ppl_{lang}.jsonl"
    written = [atomic_write_text(cz, _jsonl(items)), atomic_write_text(hp, _jsonl(docs)),
               atomic_write_text(tasks_dir / f"udhr_cloze_{lang}.yaml", cloze_yaml(lang, cz, sz["cloze_choices"])),
               atomic_write_text(tasks_dir / f"heldout_ppl_{lang}.yaml", ppl_yaml(lang, hp))]
    summary = cloze_summary(items)
    counts = {"cloze_items": len(items), "heldout_docs": len(docs), "heldout_chars": sum(len(d["text"]) for d in docs),
              "heldout_effective_docs": round(effective_docs(docs), 1),
              "frequency_source": layout.relative(freq_file) if freq_file else f"{layout.relative(layout.data_file('udhr', lang))} "
              "(no training text)", "cloze_chance": summary["chance"], "cloze_unigram_guesser": summary["unigram"],
              "cloze_answer_minus_distractor_chars": summary["answer_minus_distractor_chars"]}
    return written, counts


def build_local_tasks(
    output_dir: str | Path, languages: list[str], sizes: dict[str, Any] | None = None, force: bool = False
) -> Path:
    """Generate (or reuse) the local suite under ``<output_dir>/eval/tasks``; returns that folder."""
    from neuronmoe.utils import Manifest, write_manifest
    from neuronmoe.utils.manifest import describe_files

    layout = Layout(Path(output_dir).resolve())
    tasks_dir = layout.eval_tasks
    sz = resolve_sizes(sizes)
    inputs = _inputs(layout, languages)
    config = {"languages": list(languages), "sizes": sz, "root": str(layout.root)}
    if not force and _up_to_date(tasks_dir, inputs, config):
        return tasks_dir
    written: list[Path] = []
    counts: dict[str, Any] = {}
    heldout = _heldout(layout, languages, sz)
    for lang in languages:
        files, counts[lang] = _write_language(layout, lang, sz, heldout[lang])
        written += files
    # drop YAMLs of languages no longer asked for, so the index only knows current ones
    keep = {p.name for p in written}
    for p in list(tasks_dir.glob("*.yaml")) + list((tasks_dir / "data").glob("*.jsonl")):
        if p.name not in keep:
            p.unlink()
    write_manifest(tasks_dir, Manifest(stage="eval-tasks", config=config, inputs=inputs, counts=counts,
                                       files=describe_files(tasks_dir, written)))
    return tasks_dir
