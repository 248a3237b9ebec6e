"""Settings of ``neuronmoe analyze-experts`` (defaults: ``neuronmoe/configs/analysis.yaml``, the paper's) and
``neuronmoe figures``."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from neuronmoe.settings import Command, DeviceSettings, ModelOutputSettings, Settings, parse_list, setting

NO_TOKEN_POLICIES = ("exclude", "bottom", "zero")  #: neuronmoe.analysis.expert_ap.NO_TOKEN_POLICIES


def language_list(text: str) -> str | None:
    """``"el, tr"`` -> ``"el,tr"`` (checked to be one language once every layer is resolved, so that ``--target``
    wins over a ``NEW_LANGS`` naming several)."""
    return ",".join(parse_list(text)) or None


def check_one_language(s: Settings, name: str = "target") -> None:
    """``--target`` (or ``NEW_LANGS``) names one language: ``"el"``, not ``"el,tr"``."""
    langs = parse_list(getattr(s, name) or "")
    if len(langs) > 1:
        s.fail(name, f"give one language, not {len(langs)} (NEW_LANGS names several: pass --target)")


@dataclass(kw_only=True)
class AnalysisSettings(DeviceSettings, ModelOutputSettings):
    COMMAND = "analyze-experts"
    YAML = "analysis"

    run: str = setting("neuronmoe-s1", env="ANALYSIS_RUN", yaml=False, name_like=True, metavar="RUN",
                       help="training run whose adapter is analysed: $OUTPUT_DIR/train/<run>/adapter")
    adapter: str | None = setting(None, env="ANALYSIS_ADAPTER", yaml=False, metavar="DIR", parse=str,
                                  help="adapter folder (overrides --run); 'none' analyses the dense base model, every MLP as a "
                                       "single 'base' expert")
    languages: list[str] | None = setting(None, env="ANALYSIS_LANGUAGES", yaml=False, metavar="LANGS",
                                          help="languages whose samples are ranked, e.g. 'en,el' (default: every "
                                               "data/samples/<lang>.jsonl)")
    target: str | None = setting(None, env="NEW_LANGS", env_aliases=("TARGET_LANG",), parse=language_list, yaml=False,
                                 metavar="LANG",
                                 help="language of the tables and heatmap (one language; default: the adapter's new language "
                                      "from its allocation, else the last language)")
    threshold: float = setting(env="ANALYSIS_AP_THRESHOLD", range=(0, 1), lo_open=True,
                               help="high-AP threshold, AP >= this", paper="§6.1: AP >= 0.9")
    no_token: str = setting(env="ANALYSIS_NO_TOKEN", choices=NO_TOKEN_POLICIES,
                            help="sentences that routed no token to an expert: exclude them from its ranking, rank them below "
                                 "every other sentence, or score them 0; see docs/analysis.md")
    dense_layers: bool = setting(switch=True, env="ANALYSIS_DENSE_LAYERS",
                                 help="also analyse single-expert (dense) layers, the MLP as 'base' (--no-dense-layers: only "
                                      "the MoE layers)")
    batch_size: int = setting(env="ANALYSIS_BATCH_SIZE", range=(1, None), help="sentences per forward pass")
    max_length: int = setting(env="ANALYSIS_MAX_LENGTH", range=(1, None), help="truncate sentences to this many tokens")
    limit: int = setting(env="ANALYSIS_LIMIT", range=(0, None), help="use at most this many samples per language, 0 = all")
    keep_activations: bool = setting(False, switch=True, env="ANALYSIS_KEEP_ACTIVATIONS", yaml=False,
                                     help="keep the pooled-activation memmaps under analysis/activations/")
    force: bool = setting(False, switch=True, yaml=False,
                          help="recompute even if analysis/manifest.json says the outputs are up to date")

    def check(self) -> None:
        check_one_language(self)


def _no_dense_layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-dense-layers", dest="dense_layers", action="store_const", const=False, default=argparse.SUPPRESS,
                   help="analyse only the MoE layers")


@dataclass(kw_only=True)
class FiguresSettings(Settings):
    COMMAND = "figures"

    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR",
                              help="root folder of the stage outputs drawn")
    figures_dir: str | None = setting(None, env="FIGURES_DIR", yaml=False, metavar="DIR",
                                      help="where to write (default $OUTPUT_DIR/figures)")
    target: str | None = setting(None, env="NEW_LANGS", env_aliases=("TARGET_LANG",), parse=language_list, metavar="LANG",
                                 help="language of the expert heatmap (one language; default: the one analysed)")

    def check(self) -> None:
        check_one_language(self)


COMMANDS = [
    Command("analyze-experts", AnalysisSettings, "neuronmoe.analysis.stage:main",
            help="routing-aware per-expert AP of a trained MoE adapter (paper eq. 5-6, Tables 4/10, Figure 3)",
            description="Runs the neuron-analysis samples through base + adapter, pools every expert's units (gate "
            "pre-activation, up, down) over the tokens routed to it per sentence, computes AP per unit and language, and "
            "writes high-AP counts per layer and expert (CSV, Markdown, JSON) and a heatmap. Defaults: "
            "neuronmoe/configs/analysis.yaml.", extra=_no_dense_layers),
    Command("figures", FiguresSettings, "neuronmoe.analysis.stage:figures_main",
            help="draw every figure that the stage outputs under --output-dir allow (PNG + PDF)"),
]
