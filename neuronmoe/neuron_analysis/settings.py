"""Settings of ``neuronmoe neurons`` (defaults: ``neuronmoe/configs/neurons.yaml``, the paper's)."""
from __future__ import annotations

from dataclasses import dataclass

from neuronmoe.settings import DTYPE_CHOICES, Command, DeviceSettings, ModelOutputSettings, setting

METRICS = ("ap", "lape")


@dataclass(kw_only=True)
class NeuronSettings(DeviceSettings, ModelOutputSettings):
    COMMAND = "neurons"
    YAML = "neurons"
    CONFIG_ENV = "NEURONS_CONFIG"

    data_dir: str | None = setting(None, env="DATA_DIR", yaml=False, metavar="DIR",
                                   help="folder with samples/<lang>.jsonl and manifest.json (default $OUTPUT_DIR/data)")
    languages: list[str] = setting(env="LANGUAGES",
                                   help="every analysed language, comma separated: one-vs-rest AP per language",
                                   paper="§4.1: en, el, tr, hu and negatives")
    metric: str = setting(env="METRIC", choices=METRICS,
                          help="ap: average precision (Kojima et al., the paper); lape: Tang et al. 2024 over MLP activations")
    top_k: int = setting(env="NEURONS_TOP_K", env_aliases=("TOP_K",), range=(1, None),
                         help="units kept per language across the model", paper="§3.1: top 1,000")
    ap_threshold: float = setting(env="AP_THRESHOLD",
                                  help="keep only units scoring above this (0 = the published code, no threshold)",
                                  paper="§3.1: AP > 0.5")
    pool: str = setting(env="POOL", choices=("mean", "max"), help="pooling over a sentence's real tokens")
    include_bos: bool = setting(env="INCLUDE_BOS", metavar="BOOL",
                                help="keep the BOS token in the pooling, as the published code does")
    modules: list[str] | None = setting(env="MODULES", help="restrict the units to these projections, e.g. "
                                        "gate_proj,up_proj (default: all seven)")
    batch_size: int = setting(env="NEURONS_BATCH_SIZE", env_aliases=("BATCH_SIZE",), range=(1, None),
                              help="sentences per forward pass, padded")
    max_length: int = setting(env="NEURONS_MAX_LENGTH", env_aliases=("MAX_LENGTH",), range=(1, None),
                              help="drop samples with more tokens", paper="published code: 256")
    dtype: str = setting(env="DTYPE", choices=DTYPE_CHOICES,
                         help="forward compute dtype; pooling is fp32 and storage fp16 (fast = bf16 where computed natively: "
                              "a GPU, or a CPU with AVX512-BF16/AMX; else fp32; auto = bf16 on GPU, fp32 on CPU)")
    lape_quantile: float = setting(env="LAPE_QUANTILE", range=(0, 1), lo_open=True, hi_open=True,
                                   help="LAPE activation bar quantile")
    ap_chunk_mb: int = setting(env="AP_CHUNK_MB", range=(1, None), help="working-memory bound of the AP step in MiB")
    force: bool = setting(False, switch=True, yaml=False,
                          help="recompute even when neurons/manifest.json matches these settings and inputs")
    progress: bool = setting(True, flag="--no-progress", switch=False, yaml=False, help="no progress bars")

    def check(self) -> None:
        from neuronmoe.languages import check_languages

        check_languages(list(self.languages), self.origin("languages"))
        if len(self.languages) < 2:
            self.fail("languages", "one-vs-rest AP needs at least two languages")
        if self.metric == "ap" and not 0 <= self.ap_threshold < 1:  # a unit is kept when its AP is above it
            self.fail("ap_threshold", f"{self.ap_threshold!r} is out of range [0, 1); AP lies in [0, 1] and units above "
                                      "the threshold are kept (0.5 in the paper)")
        if self.metric == "lape" and self.modules:
            self.fail("modules", "LAPE always uses the MLP activation outputs (act_fn); drop --modules or use --metric ap")


COMMANDS = [Command(
        "neurons", NeuronSettings, "neuronmoe.neuron_analysis.analysis:main",
        help="find language-specific units (AP, Kojima et al.; or LAPE) and count them per layer",
        description="Pool every linear projection's outputs per sentence in one batched pass over all languages, score "
        "every (layer, module, index) unit one-vs-rest per language, keep the top-K per language and write "
        "$OUTPUT_DIR/neurons/ (see docs/neuron_analysis.md). Defaults: neuronmoe/configs/neurons.yaml.")]
