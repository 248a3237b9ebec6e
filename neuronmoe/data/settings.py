"""Settings of ``neuronmoe prepare-data`` (defaults: ``neuronmoe/configs/data.yaml``, the paper's)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from neuronmoe.settings import Command, Meta, ModelOutputSettings, parse_list, read_env, setting

ROLES = ("new", "old", "neg")
#: the settings that decide the files (a rerun with the same ones and the same inputs is skipped); ``num_proc``
#: is not one of them: the files are the same for any number of processes
OUTPUT_KEYS = ("new_langs", "old_langs", "neg_langs", "source", "num_samples", "max_sample_tokens", "min_sample_chars",
               "heldout_fraction", "max_heldout_docs", "max_tokens", "hf_max_tokens", "replay_docs", "seed", "udhr",
               "text_field", "hf_split", "batch_docs", "sample_pool")


def parse_token_count(text: str) -> int | None:
    """A token budget: ``2e9``, ``500000``; ``none``/``all``/``null`` = no budget."""
    if str(text).strip().lower() in ("none", "all", "null"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"not a token count: {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")) or v != int(v):
        raise ValueError(f"not a token count: {text!r}")
    return int(v)


def _not_set(text: str) -> bool:
    """``NO_UDHR=1`` -> ``udhr`` false."""
    from neuronmoe.settings import parse_bool

    return not parse_bool(text)


@dataclass(kw_only=True)
class DataSettings(ModelOutputSettings):
    COMMAND = "prepare-data"
    YAML = "data"
    YAML_DATA = ("hf_datasets",)  # how named hf: datasets are read: data for neuronmoe.data.lang_sources
    CONFIG_ENV = "DATA_CONFIG"

    model: str = setting("smollm2-135m", env="BASE_MODEL_PATH", yaml=False, metavar="MODEL",
                         help="model whose tokenizer counts tokens: a built-in alias (smollm2-135m, gemma3-270m), a local "
                              "HF model folder, or a hub id")
    new_langs: list[str] = setting(env="NEW_LANGS", metavar="NEW_LANGS",
                                   help="new (target) languages, ISO 639-1, comma-separated: samples + train + heldout")
    old_langs: list[str] = setting(env="OLD_LANGS", metavar="OLD_LANGS",
                                   help="old (source) languages: samples + replay + heldout")
    neg_langs: list[str] = setting(env="NEG_LANGS", metavar="NEG_LANGS",
                                   help="extra neuron-analysis languages: samples + heldout (or env LANGUAGES = every "
                                        "analysis language, the new and old ones removed)")
    source: Any = setting(env="SOURCE", metavar="SOURCE",
                          help="bundled (dataset-build texts from PyPI), jsonl:PATH ({lang} template, folder of "
                               "<lang>.jsonl, or one file with a 'lang' field), txt:PATH (folder of <lang>.txt or "
                               "<lang>/*.txt), hf:NAME[:CONFIG] (streamed; CONFIG template default {lang}); or one per "
                               "language: en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,hf:uonlp/CulturaX "
                               "(a bare item serves the other languages)")
    num_samples: int = setting(flag="--num-sentences", flag_aliases=("--num-samples",), env="NUM_SENTENCES",
                               range=(1, None), metavar="NUM_SENTENCES", help="neuron-analysis sentences per language",
                               paper="Kojima et al.: 500")
    max_sample_tokens: int = setting(env="MAX_SAMPLE_TOKENS", range=(1, None),
                                     help="drop sample sentences longer than this many tokens of --model's tokenizer",
                                     paper="published code: 256")
    min_sample_chars: int = setting(env="MIN_SAMPLE_CHARS", range=(0, None),
                                    help="never pick sample sentences shorter than this many characters")
    heldout_fraction: float = setting(env="HELDOUT_FRACTION", range=(0, 1), hi_open=True, help="share of documents held out")
    max_heldout_docs: int = setting(env="MAX_HELDOUT_DOCS", range=(0, None), help="at most this many held-out documents per language")
    max_tokens: int | None = setting(env="MAX_TOKENS", parse=parse_token_count, range=(1, None),
                                     help="per-language token budget of train/replay text, e.g. 2e9 (none: everything for "
                                          "bundled/jsonl/txt, hf_max_tokens for hf:)")
    hf_max_tokens: int | None = setting(flag=None, parse=parse_token_count, range=(1, None),
                                        help="token budget of an hf: source when max_tokens is not set", paper="2B tokens per language")
    replay_docs: int = setting(env="REPLAY_DOCS", range=(0, None), help="at most this many replay documents per old language",
                               paper="published stage-2 data: 50k")
    text_field: str = setting(env="TEXT_FIELD", help="text field of jsonl/hf records")
    hf_split: str = setting(env="HF_SPLIT", help="split of an hf: dataset")
    batch_docs: int = setting(flag=None, range=(1, None), help="documents per chunk (held-out choice, batched tokenisation)")
    sample_pool: int = setting(flag=None, range=(0, None),
                               help="candidate sentences kept for samples/ per language (the first ones read; at least 2x num_samples)")
    num_proc: int = setting(env="DATA_NUM_PROC", range=(1, None),
                            help="worker processes that split, hash and tokenise documents; the output is the same for any value")
    seed: int = setting(env="DATA_SEED", env_aliases=("SEED",), help="random seed of every choice")
    udhr: bool = setting(flag="--no-udhr", switch=False, env="NO_UDHR", parse=_not_set,
                         help="skip the UDHR (udhr/ is not written; NO_UDHR=1 does the same)")
    force: bool = setting(False, switch=True, env="FORCE", yaml=False,
                          help="rebuild even when data/manifest.json matches these inputs and settings (FORCE=1 does the same)")
    progress: bool = setting(True, flag="--no-progress", switch=False, yaml=False, help="no progress bars")

    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | argparse.Namespace | None = None, *,
                environ: Mapping[str, str] | None = None, config_file: str | None = None,
                sets: Sequence[str] | None = None, profile: str | None = None, **context: Any) -> DataSettings:
        """As :meth:`Settings.resolve`, plus a rule of the published scripts: ``LANGUAGES`` (every analysis
        language) gives ``neg_langs`` (the new and old languages removed) when neither ``--neg-langs`` nor
        ``NEG_LANGS`` does."""
        import dataclasses
        import os

        env = os.environ if environ is None else environ
        s: DataSettings = super().resolve(flags, environ=env, config_file=config_file, sets=sets, profile=profile,
                                          **context)  # type: ignore[assignment]
        where = s.provenance().get("neg_langs", "")
        everything, var = read_env(_LANGUAGES_META, env, cls.COMMAND)
        if everything is not None and not where.startswith(("--", "env ", "caller")):
            neg = [x for x in parse_list(everything) if x not in s.new_langs and x not in s.old_langs]
            where_all = {**s.provenance(), "neg_langs": f"env {var}"}
            s = dataclasses.replace(s, neg_langs=neg)
            object.__setattr__(s, "_where", where_all)
            s.validate()
        return s

    def check(self) -> None:
        from neuronmoe.languages import check_languages, get_language

        check_languages(list(self.new_langs), self.named("new_langs"))
        check_languages(list(self.old_langs), self.named("old_langs"))
        for c in self.neg_langs:
            get_language(c, self.named("neg_langs"))
        both = sorted(set(self.new_langs) & set(self.old_langs))
        if both:
            self.fail("old_langs", f"{', '.join(both)} cannot be both a new and an old language (--new-langs)")

    def named(self, name: str) -> str:
        """Where ``name`` came from, with the variable of a flag (``--new-langs (NEW_LANGS)``)."""
        src = self.origin(name)
        return f"{src} (NEW_LANGS)" if src == "--new-langs" else f"{src} (OLD_LANGS)" if src == "--old-langs" else src

    # ---- what the stage derives from the settings --------------------------------------------------------
    @property
    def languages(self) -> list[str]:
        """Every prepared language: new, old, then the extra analysis ones."""
        return list(dict.fromkeys(self.new_langs + self.old_langs + self.neg_langs))

    def role(self, lang: str) -> str:
        if lang in self.new_langs:
            return "new"
        if lang in self.old_langs:
            return "old"
        return "neg"

    def token_budget(self, source: Any) -> int | None:
        """Train/replay tokens per language from ``source``: ``max_tokens``, else ``hf_max_tokens`` for a large one."""
        if self.max_tokens is not None:
            return self.max_tokens
        return self.hf_max_tokens if source.is_large else None

    def output_config(self) -> dict[str, Any]:
        """The settings that decide the files (the manifest's ``config``, without the model)."""
        return {k: getattr(self, k) for k in OUTPUT_KEYS}


#: ``LANGUAGES``: every analysis language (the neuron stage's variable), read for ``neg_langs``
_LANGUAGES_META = Meta(help="every analysis language", env="LANGUAGES")


COMMANDS = [Command(
    "prepare-data", DataSettings, "neuronmoe.data.prepare:main",
    help="build samples/, train/, heldout/, replay/ and udhr/ under $OUTPUT_DIR/data",
    description="Read a text source for every language, deduplicate, split it into neuron-analysis samples, "
    "training/replay documents and held-out documents, and write $OUTPUT_DIR/data with a manifest. "
    "Defaults: neuronmoe/configs/data.yaml (env DATA_CONFIG names a --config file).")]
