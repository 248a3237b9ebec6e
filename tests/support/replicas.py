"""Tiny offline replicas of every hub dataset the paper suite reads, generated from our own words.

Each replica is a folder ``<root>/<owner>__<name>/`` that ``datasets.load_dataset(folder, config)``
reads like the hub dataset: the same config names, split names, field names, label formats and
known quirks (facts in shared/reference/paper-scale-protocol.md, section 3):

* ARC: ``choices{text,label}`` + ``answerKey``; some items with digit labels (``"1"``-``"4"``, as in
  ai2_arc and malhajar/arc-tr) and some with 3 or 5 choices;
* Okapi (alexandrainst/m_*): ``instruction``, ``option_a``..``option_e`` (``option_e`` empty for
  4-choice items), letter ``answer``; m_hellaswag has one split named ``val`` and labels with a
  leading space; m_mmlu's shots come from ``train``;
* HellaSwag: ``activity_label``, ``ctx_a``, ``ctx_b``, ``endings``, string ``label``; test splits with
  empty labels; WikiHow-style ``[header]`` / ``[title]`` markers (translated ones in Turkish);
* MMLU: one config per subject (and ``all``) for cais/mmlu and ilsp/mmlu_greek, 5 ``dev`` rows; malhajar/mmlu-tr
  has no ``configs:`` block, as on the hub: per subject ``<subject>/dev-4.jsonl``, ``validation-N.jsonl``,
  ``test-N.jsonl`` (``datasets`` alone would fold ``dev`` into ``validation``); ilsp/mmlu_greek answers are
  indices in some subjects and Greek letters (``Α``-``Δ``) in others;
* Belebele: one config per FLORES code, a single ``test`` split, ``correct_answer_num`` a digit string.

``replica.json`` in each folder declares the row count of every (config, split), which
``neuronmoe evaluate --check --dataset-replicas`` compares with what lm-eval loads.

    python tests/evaluation/replicas.py OUT_DIR     # (re)build every replica under OUT_DIR
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from neuronmoe.evaluation.paper_tasks import MMLU_SUBJECTS

#: a few plain words per language (our own), from which every text is drawn
WORDS = {
    "en": "water earth sky tree book river stone light house bread music winter garden letter window city".split(),
    "el": "νερό γη ουρανός δέντρο βιβλίο ποτάμι πέτρα φως σπίτι ψωμί μουσική χειμώνας κήπος γράμμα παράθυρο πόλη".split(),
    "tr": "su toprak gökyüzü ağaç kitap nehir taş ışık ev ekmek müzik kış bahçe mektup pencere şehir".split(),
    "hu": "víz föld ég fa könyv folyó kő fény ház kenyér zene tél kert levél ablak város".split(),
    "bn": "জল মাটি আকাশ গাছ বই নদী পাথর আলো ঘর রুটি গান শীত বাগান চিঠি জানালা শহর".split(),
    "ne": "पानी माटो आकाश रुख किताब नदी ढुङ्गा उज्यालो घर रोटी गीत जाडो बगैँचा चिठी झ्याल सहर".split(),
    # languages outside the paper, evaluated on the benchmark families (eval_families.yaml)
    "sw": "maji ardhi anga mti kitabu mto jiwe mwanga nyumba mkate muziki baridi bustani barua dirisha mji".split(),
    "hi": "पानी धरती आकाश पेड़ किताब नदी पत्थर रोशनी घर रोटी संगीत सर्दी बगीचा चिट्ठी खिड़की शहर".split(),
}
FLORES = {"en": "eng_Latn", "el": "ell_Grek", "tr": "tur_Latn", "hu": "hun_Latn", "bn": "ben_Beng", "ne": "npi_Deva",
          "sw": "swh_Latn", "hi": "hin_Deva"}
GREEK_LETTERS = "ΑΒΓΔ"

#: rows per split
ARC_ROWS = {"train": 30, "validation": 3, "test": 4}  # 25-shot ARC needs 25 train rows
HELLASWAG_ROWS = {"train": 12, "validation": 4, "test": 3}  # 10-shot (published script) needs 10
MMLU_ROWS = {"dev": 5, "validation": 2, "test": 2}
BELEBELE_ROWS = 8  # 5-shot from test itself (published script) needs 5 + the scored item


class _Text:
    def __init__(self, lang: str, seed: int):
        self.words = WORDS[lang]
        self.rng = random.Random(seed)

    def words_(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choice(self.words) for _ in range(self.rng.randint(lo, hi)))

    def sentence(self, lo: int = 3, hi: int = 5, end: str = ".") -> str:
        s = self.words_(lo, hi)
        return s[:1].upper() + s[1:] + end

    def distinct(self, n: int) -> list[str]:
        return self.rng.sample(self.words, n)


def _write_files(folder: Path, dataset: str, configs: dict[str | None, dict[str, list[dict[str, Any]]]],
                 broken: str | None = None) -> Path:
    """A repository without a ``configs:`` block, laid out like ``malhajar/mmlu-tr``: per config (subject) a folder
    of files named ``<split>-<rows>.jsonl``. ``datasets`` then knows no config names and infers splits from file
    names (``dev`` folded into ``validation``): only a task that names each split's files can read it."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, int]] = {}
    texts = []
    for config, splits in configs.items():
        rows[str(config)] = {}
        for split, data in splits.items():
            text = "{not json\n" if config == broken else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
            (folder / str(config)).mkdir(exist_ok=True)
            (folder / str(config) / f"{split}-{len(data)}.jsonl").write_text(text, encoding="utf-8")
            rows[str(config)][split] = len(data)
            texts.append(text)
    digest = hashlib.sha256("".join(texts).encode("utf-8")).hexdigest()[:12]
    (folder / "README.md").write_text(f"# {dataset}\n\nOffline replica for the NeuronMoE tests (generated text). Its card "
                                      "has no metadata block, as on the hub.\n", encoding="utf-8")
    (folder / "replica.json").write_text(json.dumps({"dataset": dataset, "rows": rows, "digest": digest, "layout": "files"},
                                                    indent=1), encoding="utf-8")
    return folder


def _write(folder: Path, dataset: str, configs: dict[str | None, dict[str, list[dict[str, Any]]]], broken: str | None = None) -> Path:
    """A dataset folder: ``<data-digest>/<config>/<split>.jsonl`` files, a README declaring them, replica.json.

    The data sit under a folder named by their content digest: ``datasets`` keys its cache of a
    local folder by the README's configs, not by the files' content, so two replicas with different
    rows must not declare the same paths.
    """
    folder.mkdir(parents=True, exist_ok=True)
    texts = {(config or "default", split): "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
             for config, splits in configs.items() for split, data in splits.items()}
    for key in texts:
        if key[0] == broken:  # a config that cannot be read
            texts[key] = "{not json\n"
    digest = hashlib.sha256(json.dumps(sorted(texts.items())).encode("utf-8")).hexdigest()[:12]
    lines = ["---", "configs:"]
    rows: dict[str, dict[str, int]] = {}
    for config, splits in configs.items():
        name = config or "default"
        lines += [f"- config_name: {name}", "  data_files:"]
        rows[name] = {}
        for split, data in splits.items():
            rel = f"data-{digest}/{name}/{split}.jsonl"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(texts[(name, split)], encoding="utf-8")
            lines += [f"  - split: {split}", f"    path: {rel}"]
            rows[name][split] = len(data)
    lines += ["---", "", f"Offline replica of `{dataset}` for the NeuronMoE tests (generated text, not the real data).", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")
    (folder / "replica.json").write_text(json.dumps({"dataset": dataset, "rows": rows, "digest": digest}, indent=1), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------ ARC
def _arc_rows(lang: str, n: int, seed: int, digit_every: int = 0) -> list[dict[str, Any]]:
    t = _Text(lang, seed)
    out = []
    for i in range(n):
        k = 4 if i % 7 else (3 if i % 14 else 5)  # mostly 4 choices, some 3 or 5
        digits = digit_every and i % digit_every == 1
        labels = [str(j + 1) for j in range(k)] if digits else list("ABCDE"[:k])
        out.append({"id": f"{lang}-arc-{seed}-{i}", "question": t.sentence(3, 5, "?"),
                    "choices": {"text": t.distinct(k), "label": labels}, "answerKey": labels[t.rng.randrange(k)]})
    return out


def _arc(lang: str, seed: int, digit_every: int = 0) -> dict[str, dict[str, list]]:
    return {cfg: {split: _arc_rows(lang, n, seed + 17 * j + (100 if cfg == "ARC-Easy" else 0), digit_every)
                  for j, (split, n) in enumerate(ARC_ROWS.items())}
            for cfg in ("ARC-Challenge", "ARC-Easy")}


def _okapi_arc(lang: str, seed: int) -> dict[str, list]:
    t = _Text(lang, seed)
    splits = {}
    for split, n in ARC_ROWS.items():
        rows = []
        for i in range(n):
            opts = t.distinct(5)
            k = 5 if i % 5 == 0 else 4
            rows.append({"id": f"{lang}-marc-{split}-{i}", "instruction": t.sentence(3, 5, "?"),
                         **{f"option_{c}": (opts[j] if j < k else "") for j, c in enumerate("abcde")},
                         "answer": "ABCDE"[t.rng.randrange(k)]})
        splits[split] = rows
    return splits


# ------------------------------------------------------------------------------------ HellaSwag
_MARKERS = {"en": ["[header]", "[title]", "[step]"], "tr": ["[başlık]", "[adım]"]}


def _hellaswag_rows(lang: str, n: int, seed: int, split: str, unlabelled: bool = False, label_space: bool = False) -> list[dict[str, Any]]:
    t = _Text(lang, seed)
    marks = _MARKERS.get(lang) or []
    out = []
    for i in range(n):
        ctx_a = t.sentence(3, 5)
        ctx_b = t.words_(2, 3)  # lower-case start: lm-eval capitalises it (and lower-cases the rest)
        if marks and i % 2:
            ctx_b = f"{ctx_b} {marks[i % len(marks)]} {t.words_(1, 2)}"
        endings = [t.words_(2, 4) + (f" {marks[0]} {t.words_(1, 2)}" if marks and j == i % 4 else "") for j in range(4)]
        label = "" if unlabelled else str(t.rng.randrange(4))
        out.append({"ind": i, "activity_label": t.words_(1, 2).capitalize(), "ctx_a": ctx_a, "ctx_b": ctx_b,
                    "ctx": f"{ctx_a} {ctx_b}", "endings": endings, "source_id": f"{lang}~{i}", "split": split,
                    "split_type": "indomain" if i % 2 else "zeroshot", "label": (" " + label) if label_space and label else label})
    return out


def _hellaswag(lang: str, seed: int, splits: tuple[str, ...] = ("train", "validation", "test")) -> dict[str, list]:
    return {s: _hellaswag_rows(lang, HELLASWAG_ROWS[s], seed + 31 * j, s, unlabelled=(s == "test")) for j, s in enumerate(splits)}


# ----------------------------------------------------------------------------------------- MMLU
def _mmlu(lang: str, seed: int, dev_rows: int = 5, greek_letters: bool = False, dev_is_test: tuple[str, ...] = (),
          with_all: bool = True) -> dict[str, dict]:
    configs: dict[str | None, dict[str, list]] = {}
    for si, subject in enumerate(MMLU_SUBJECTS):
        t = _Text(lang, seed + si)
        letters = greek_letters and si % 2 == 1  # every other subject answers with a Greek letter
        splits = {}
        for split, n in {**MMLU_ROWS, "dev": dev_rows}.items():
            rows = []
            for _ in range(n):
                a = t.rng.randrange(4)
                rows.append({"question": t.sentence(2, 4, "?"), "subject": subject, "choices": t.distinct(4),
                             "answer": GREEK_LETTERS[a] if letters else a})
            splits[split] = rows
        if subject in dev_is_test:  # the bad ilsp/mmlu_greek revision: test items in the dev split
            splits["dev"] = [dict(r) for r in splits["test"]] + splits["dev"]
        configs[subject] = splits
    if with_all:  # every subject in one config, as cais/mmlu and ilsp/mmlu_greek have it
        configs["all"] = {split: [r for c in list(configs.values()) for r in c[split]] for split in MMLU_ROWS}
    return configs


def _okapi_mmlu(lang: str, seed: int) -> dict[str, list]:
    t = _Text(lang, seed)
    out = {}
    for split, n in {"train": 6, "val": 2, "test": 3}.items():
        out[split] = [{"id": f"{lang}-mmmlu-{split}-{i}", "instruction": t.sentence(2, 4, "?"),
                       **{f"option_{c}": w for c, w in zip("abcd", t.distinct(4))}, "answer": "ABCD"[t.rng.randrange(4)]}
                      for i in range(n)]
    return out


# ------------------------------------------------------------------- families of a new language
def _xcopa(lang: str, seed: int) -> dict[str, list]:
    """cambridgeltl/xcopa: premise, choice1, choice2, question (cause/effect), integer label; validation + test."""
    t = _Text(lang, seed)
    return {split: [{"premise": t.sentence(3, 5), "choice1": t.sentence(2, 4), "choice2": t.sentence(2, 4),
                     "question": ("cause", "effect")[i % 2], "label": t.rng.randrange(2), "idx": i, "changed": False}
                    for i in range(n)] for split, n in {"validation": 3, "test": 4}.items()}


def _xstorycloze(lang: str, seed: int) -> dict[str, list]:
    """juletxara/xstory_cloze: four story sentences, two endings, answer_right_ending 1 or 2; train + eval."""
    t = _Text(lang, seed)
    return {split: [{"story_id": f"{lang}-{split}-{i}", **{f"input_sentence_{j}": t.sentence(3, 5) for j in range(1, 5)},
                     "sentence_quiz1": t.sentence(2, 4), "sentence_quiz2": t.sentence(2, 4),
                     "answer_right_ending": 1 + t.rng.randrange(2)} for i in range(n)]
            for split, n in {"train": 3, "eval": 4}.items()}


def _global_mmlu(lang: str, seed: int) -> dict[str, list]:
    """CohereForAI/Global-MMLU (one config per language): every subject in one table (lm-eval filters by
    ``subject``), option_a..option_d, letter answer; 5 dev rows per subject for 5 shots, test."""
    t = _Text(lang, seed)
    out: dict[str, list] = {"dev": [], "test": []}
    for subject in MMLU_SUBJECTS:
        for split, n in (("dev", 5), ("test", 1)):
            out[split] += [{"sample_id": f"{subject}/{split}/{i}", "subject": subject, "subject_category": "Other",
                            "question": t.sentence(2, 4, "?"), **{f"option_{c}": w for c, w in zip("abcd", t.distinct(4))},
                            "answer": "ABCD"[t.rng.randrange(4)]} for i in range(n)]
    return out


# ------------------------------------------------------------------------------------- Belebele
def _belebele(lang: str, seed: int) -> dict[str, list]:
    t = _Text(lang, seed)
    rows = []
    for i in range(BELEBELE_ROWS):
        ans = t.distinct(4)
        rows.append({"link": f"https://example.org/{lang}/{i}", "question_number": 1 + i % 2,
                     "flores_passage": " ".join(t.sentence(4, 6) for _ in range(2)), "question": t.sentence(3, 4, "?"),
                     **{f"mc_answer{j + 1}": a for j, a in enumerate(ans)},
                     "correct_answer_num": str(1 + t.rng.randrange(4)), "dialect": FLORES[lang], "ds": "2023-05-03"})
    return {"test": rows}


def replica_specs(dev_is_test: tuple[str, ...] = ()) -> dict[str, Callable[[], dict]]:
    """``{hub dataset: builder of {config: {split: rows}}}`` for every dataset of the paper suite."""
    okapi = ("hu", "bn", "ne", "hi")
    return {
        "allenai/ai2_arc": lambda: _arc("en", 1, digit_every=9),
        "ilsp/arc_greek": lambda: _arc("el", 2),
        "malhajar/arc-tr": lambda: _arc("tr", 3, digit_every=4),
        "alexandrainst/m_arc": lambda: {lang: _okapi_arc(lang, 4 + i) for i, lang in enumerate(okapi)},
        "facebook/belebele": lambda: {FLORES[lang]: _belebele(lang, 10 + i) for i, lang in enumerate(FLORES)},
        "Rowan/hellaswag": lambda: {None: _hellaswag("en", 20)},
        "ilsp/hellaswag_greek": lambda: {None: _hellaswag("el", 21)},
        "malhajar/hellaswag-tr": lambda: {None: _hellaswag("tr", 22, ("train", "validation"))},
        "alexandrainst/m_hellaswag": lambda: {lang: {"val": _hellaswag_rows(lang, 14, 23 + i, "val", label_space=True)}
                                              for i, lang in enumerate(okapi)},
        "cais/mmlu": lambda: _mmlu("en", 100),
        "ilsp/mmlu_greek": lambda: _mmlu("el", 200, greek_letters=True, dev_is_test=dev_is_test),
        "malhajar/mmlu-tr": lambda: _mmlu("tr", 300, dev_rows=4, with_all=False),
        "alexandrainst/m_mmlu": lambda: {lang: _okapi_mmlu(lang, 400 + i) for i, lang in enumerate(okapi)},
        # Swahili's families (eval_families.yaml); Hindi reads Okapi and Belebele above
        "cambridgeltl/xcopa": lambda: {"sw": _xcopa("sw", 500)},
        "juletxara/xstory_cloze": lambda: {"sw": _xstorycloze("sw", 600)},
        "CohereForAI/Global-MMLU": lambda: {"sw": _global_mmlu("sw", 700)},
    }


#: repositories without a ``configs:`` block on the hub (protocol notes, section 3): laid out by files
NO_CONFIGS_BLOCK = {"malhajar/mmlu-tr"}
#: fields whose text changes in a dataset that "moved" to a new commit
_TEXT_FIELDS = ("question", "ctx_a", "instruction", "flores_passage")


def _moved(configs: dict[str | None, dict[str, list[dict[str, Any]]]]) -> dict:
    """The same dataset at a later commit: the first row of every split reworded."""
    out: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
    for config, splits in configs.items():
        out[config] = {}
        for split, rows in splits.items():
            first = dict(rows[0])
            field = next(f for f in _TEXT_FIELDS if f in first)
            first[field] = f"{first[field]} (revised)"
            out[config][split] = [first] + rows[1:]
    return out


def build_replicas(root: str | Path, dev_is_test: tuple[str, ...] = (), broken: tuple[str, str] | None = None,
                   moved: tuple[str, ...] = ()) -> Path:
    """Write every replica under ``root``.

    ``dev_is_test``: Greek MMLU subjects whose dev split holds test items (a bad revision);
    ``broken``: (dataset, config) whose files are not valid JSON (a dataset that fails to load);
    ``moved``: datasets written as at a later commit (other text, so another ``replica:<digest>`` revision).
    """
    from neuronmoe.evaluation.cells import replica_dir

    root = Path(root)
    for dataset, make in replica_specs(dev_is_test).items():
        configs = _moved(make()) if dataset in moved else make()
        write = _write_files if dataset in NO_CONFIGS_BLOCK else _write
        write(replica_dir(root, dataset), dataset, configs, broken[1] if broken and broken[0] == dataset else None)
    return root


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/evaluation/replicas.py OUT_DIR")
    print(build_replicas(sys.argv[1]))


@pytest.fixture(scope="module")
def fast_replica_loading():
    """Test speed only: the replicas never change during a session, so each (folder, config) is
    read once (``datasets.load_dataset`` memoised) and README metadata is parsed by PyYAML's C
    safe loader. lm-eval still calls ``datasets.load_dataset`` for every task it builds."""
    import datasets
    import yaml

    mp = pytest.MonkeyPatch()
    if getattr(yaml, "__with_libyaml__", False):
        mp.setattr(yaml, "safe_load", lambda stream: yaml.load(stream, Loader=yaml.CSafeLoader))
    real = datasets.load_dataset
    memo: dict = {}

    def load_dataset(path=None, name=None, **kwargs):
        if not (path and (Path(str(path)) / "replica.json").is_file()):
            return real(path=path, name=name, **kwargs)
        key = (str(path), name, repr(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = real(path=path, name=name, **kwargs)
        return memo[key]

    mp.setattr(datasets, "load_dataset", load_dataset)
    yield memo
    mp.undo()
