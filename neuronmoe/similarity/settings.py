"""Settings of ``neuronmoe similarity`` (defaults: ``neuronmoe/configs/similarity.yaml``, LayerMoE's)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from neuronmoe.errors import ConfigError
from neuronmoe.settings import Command, DeviceSettings, ModelOutputSettings, parse_list, setting

SPLITS = ("samples", "train", "heldout", "replay", "documents")
CAPTURE_SITES = ("mlp_input", "attn_input", "attn_output")  #: neuronmoe.similarity.capture.CAPTURE_SITES
LAYER_SCORES = ("layermoe", "pairs")  #: neuronmoe.similarity.core.LAYER_SCORES
YAML_FILE = "neuronmoe/configs/similarity.yaml"
_GIVEN = ("--", "env ", "caller")  #: provenance of a value the user gave (flag, --set, variable, a caller)


def _optional_list(text: str) -> list[str]:
    """``--old-langs none`` is an empty list (no old language), not "unset"."""
    return parse_list(text)


@dataclass(kw_only=True)
class SimilaritySettings(DeviceSettings, ModelOutputSettings):
    COMMAND = "similarity"
    YAML = "similarity"
    YAML_DATA = ("settings",)  # the named settings (`--setting g1`), applied by resolve()

    source: str = setting(env="SOURCE_LANG", metavar="LANG",
                          help="source (old) language, expert 0's (without --source or SOURCE_LANG: the first of OLD_LANGS)")
    targets: list[str] = setting(env="NEW_LANGS", env_aliases=("TARGET_LANGS",), metavar="NEW_LANGS",
                                 help="new language(s), comma/space separated")
    old_langs: list[str] | None = setting(env="OLD_LANGS", parse=_optional_list, metavar="OLD_LANGS",
                                          help="old languages to measure (default: the source; none: no old language)")
    data_dir: str | None = setting(None, env="DATA_DIR", yaml=False, metavar="DIR",
                                   help="prepared data (default $OUTPUT_DIR/data)")
    split: str = setting(env="SIMILARITY_SPLIT", choices=SPLITS,
                         help="which data/<split>/<lang>.jsonl to read; documents = the training documents (train/ for "
                              "new, replay/ for old languages)")
    layer_score: str = setting(choices=LAYER_SCORES,
                               help="layermoe: mean of the new-new and new-old group means (LayerMoE); pairs: mean over "
                                    "those pairs")
    include_bos: bool = setting(switch=True, help="count the BOS token's MLP input too (LayerMoE's G1 measurement does)")
    capture_site: str = setting(env="CAPTURE_SITE", choices=CAPTURE_SITES,
                                help="hidden state compared per layer: mlp_input (LayerMoE's script: the MLP-input norm's "
                                     "output), attn_input (the attention-input norm's output) or attn_output (the attention "
                                     "block's output); see docs/allocation.md")
    max_tokens: int | None = setting(None, env="SIMILARITY_TOKENS", range=(1, None),
                                     help="tokens per language (default tokens_per_language on a GPU, tokens_per_language_cpu "
                                          "on CPU)")
    tokens_per_language: int = setting(flag=None, range=(1, None), help="tokens per language on a GPU",
                                       paper="LayerMoE: 100k")
    tokens_per_language_cpu: int = setting(flag=None, range=(1, None), help="tokens per language on CPU")
    cpu_dtype: str | None = setting(flag=None, help="--dtype auto on CPU: this dtype (fast = bf16 where the CPU computes it "
                                                    "natively, else fp32)")
    batch_size: int = setting(env="SIMILARITY_BATCH_SIZE", env_aliases=("BATCH_SIZE",), range=(1, None),
                              help="texts per forward pass")
    max_length: int = setting(env="SIMILARITY_MAX_LENGTH", env_aliases=("MAX_LENGTH",), range=(1, None),
                              help="tokens per text, longer ones truncated")
    budget: float | int | None = setting(None, env="BUDGET", range=(0, None), lo_open=True, parse=float,
                                   help="LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) (default budget_per_layer x layers)")
    budget_per_layer: float = setting(flag=None, range=(0, None), lo_open=True,
                                      help="B = round(budget_per_layer x layers) unless --budget")
    allocation_name: str = setting(flag="--name", env="ALLOCATION_NAME", name_like=True, metavar="NAME",
                                   help="allocation name: $OUTPUT_DIR/allocation/<name>.json")
    allocation_out: str | None = setting(None, env="ALLOCATION_OUT", yaml=False, metavar="FILE",
                                         help="allocation JSON (default $OUTPUT_DIR/allocation/<name>.json)")
    reference: str | None = setting(None, env="REFERENCE_ALLOCATION", yaml=False, metavar="ALLOCATION",
                                    help="allocation (name or file) to compare parameters with")
    # last: the field's name shadows the function `setting` in the class body from here on
    setting: str | None = setting(None, yaml=False, metavar="NAME",
                                  help="a named setting of similarity.yaml, e.g. g1 (LayerMoE's G1: el,hu,tr vs en,es,zh, "
                                       "100k tokens of training documents, BOS included, budget 70); flags still win")

    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | argparse.Namespace | None = None, *,
                environ: Mapping[str, str] | None = None, config_file: str | None = None,
                sets: Sequence[str] | None = None, profile: str | None = None, **context: Any) -> SimilaritySettings:
        """As :meth:`Settings.resolve`, with two more layers: a named setting of similarity.yaml (``--setting g1``)
        over the YAML files and under the variables and flags; and ``source`` from the first of ``OLD_LANGS``
        when neither ``--source`` nor ``SOURCE_LANG`` gives it (the published scripts' rule)."""
        import os

        env = os.environ if environ is None else environ
        s = super().resolve(flags, environ=env, config_file=config_file, sets=sets, profile=profile, **context)
        values: dict[str, Any] = {}
        where = dict(s.provenance())
        if s.setting:
            by_name = {f.name: (f, m, tp) for f, m, tp in cls.fields()}
            label = f"{YAML_FILE}: settings.{s.setting}"
            for key, value in named_setting(s.setting, s.origin("setting")).items():
                if not where.get(key, "").startswith(_GIVEN):
                    cls._take(by_name, key, value, label, values, where, from_yaml=True)
        old = parse_list(env.get("OLD_LANGS") or "")
        if old and not where.get("source", "").startswith(_GIVEN):
            values["source"], where["source"] = old[0], "env OLD_LANGS"
        if not values:
            return s
        out = dataclasses.replace(s, **values)
        object.__setattr__(out, "_where", where)
        out.validate()
        return out

    def origin(self, name: str) -> str:
        """As :meth:`Settings.origin`; a value of a named setting: ``similarity.yaml: settings.g1.<name>``."""
        w = self.provenance().get(name, "")
        return f"{w}.{name}" if w.startswith(f"{YAML_FILE}: settings.") else super().origin(name)

    def check(self) -> None:
        from neuronmoe.languages import check_languages

        check_languages(list(self.targets), self.origin("targets"))
        old = self.old
        if not old and self.layer_score == "layermoe":
            where = f" (setting {self.setting})" if self.setting else ""
            self.fail("old_langs", f"LayerMoE's layer score{where} needs at least one old language (the new-old group)")
        if old:
            check_languages(old, self.origin("old_langs"))
        check_languages([self.source], self.origin("source"))
        clash = sorted(set(self.targets) & set(old))
        if clash:
            self.fail("targets", f"{', '.join(clash)} cannot be both new and old")

    @property
    def old(self) -> list[str]:
        """The old languages measured: ``old_langs``, else the source alone."""
        return list(self.old_langs) if self.old_langs is not None else [self.source]

    @property
    def languages(self) -> list[str]:
        """Every measured language, old ones first (the order of the similarity matrix)."""
        return self.old + list(self.targets)


def named_setting(name: str, flag: str = "--setting") -> dict[str, Any]:
    """The keys of a named setting of similarity.yaml (``settings: {g1: {...}}``)."""
    from neuronmoe.config import load_yaml

    settings = load_yaml("similarity").get("settings") or {}
    if name not in settings:
        raise ConfigError(f"{flag} {name!r}: not a setting of similarity.yaml (have {', '.join(settings) or 'none'})")
    return dict(settings[name])


COMMANDS = [Command(
    "similarity", SimilaritySettings, "neuronmoe.similarity.runner:main",
    help="LayerMoE baseline: per-layer cross-lingual similarity of MLP inputs -> allocation/layermoe.json",
    description="Capture each layer's MLP input for a token budget per language, compute the mean pairwise cosine "
    "similarity between languages, and allocate experts inversely to it (LayerMoE). Defaults: "
    "neuronmoe/configs/similarity.yaml.")]
