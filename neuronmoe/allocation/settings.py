"""Settings of ``neuronmoe allocate`` (defaults: ``neuronmoe/configs/allocation.yaml``, the paper's)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from neuronmoe.allocation.core import MAX_EXPERTS_PER_LAYER
from neuronmoe.errors import ConfigError
from neuronmoe.settings import Command, Settings, parse_list, setting

#: the modes ``--mode`` takes (``scores-csv`` is what ``--scores-csv`` selects)
MODES = ("pair", "multi", "source-only", "uniform", "similarity", "scores-csv")
ROUNDING = ("floor", "round")
NEURON_MODES = ("pair", "multi", "source-only")


def _ints(text: str) -> list[int]:
    return [int(x) for x in parse_list(text)]


def _floats(text: str) -> list[float]:
    return [float(x) for x in parse_list(text)]


@dataclass(kw_only=True)
class AllocateSettings(Settings):
    COMMAND = "allocate"
    YAML = "allocation"

    mode: str = setting(env="MODE", choices=MODES,
                        help="pair: |source U target| per layer (paper eq. 2); multi: |source| + mean |target| (published "
                             "'3lang'); source-only: NeuronMoE-EN ablation; uniform: N experts everywhere; similarity: "
                             "LayerMoE from `neuronmoe similarity` scores; scores-csv: what --scores-csv selects")
    source_lang: str = setting(flag="--source", env="SOURCE_LANG", help="source language (else the first of OLD_LANGS)")
    targets: list[str] = setting(env="NEW_LANGS", env_aliases=("TARGET_LANGS",),
                                 help="target language(s), comma separated; pair mode takes one")
    e_min: int = setting(env="E_MIN", help="fewest experts per layer, >= 1 (E counts the frozen original MLP as expert 0)",
                         paper="§3.2: E_min = 1")
    e_max: int = setting(env="E_MAX", help="most experts per layer", paper="§3.2: E_max = 6")
    rounding: str = setting(env="ROUNDING", choices=ROUNDING,
                            help="floor (truncation, reproduces the published allocations) or round (half up, the "
                                 "paper's eq. 4 text)", paper="Table 5 -> 49 experts with floor")
    uniform_experts: int | None = setting(None, flag="--num-experts", env="NUM_EXPERTS", range=(1, MAX_EXPERTS_PER_LAYER),
                                          help="--mode uniform: experts in every layer (default E_MAX)")
    budget: float | None = setting(None, env="BUDGET", range=(0, None), lo_open=True, yaml=False,
                                   help="--mode similarity: LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) "
                                        "(default budget_per_layer x layers, i.e. 70 for 28 layers)")
    budget_per_layer: float = setting(flag=None, range=(0, None), lo_open=True,
                                      help="--mode similarity without --budget: B = round(budget_per_layer x layers)",
                                      paper="LayerMoE: B = 70 for 28 layers")
    scores_csv: str | None = setting(None, env="SCORES_CSV", yaml=False, metavar="FILE",
                                     help="allocate from a CSV with columns layer,score instead (--model optional)")
    model: str | None = setting(None, env="BASE_MODEL_PATH", yaml=False, metavar="MODEL",
                                help="base model (alias, folder, hub id or shipped config such as llama-3.2-3b): checks "
                                     "the layer count and counts parameters; default: the model the neuron stage recorded")
    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR",
                              help="root folder of every stage's outputs")
    neurons_dir: str | None = setting(None, env="NEURONS_DIR", yaml=False, metavar="DIR",
                                      help="neuron-analysis results (default $OUTPUT_DIR/neurons)")
    similarity_dir: str | None = setting(None, env="SIMILARITY_DIR", yaml=False, metavar="DIR",
                                         help="--mode similarity: results of `neuronmoe similarity` (default "
                                              "$OUTPUT_DIR/similarity)")
    name: str | None = setting(None, env="ALLOCATION_NAME", yaml=False, name_like=True,
                               help="allocation name (default neuronmoe / neuronmoe-en / neuronmoe-multi / layermoe / "
                                    "uniform-N / scores-<csv>)")
    out: str | None = setting(None, env="ALLOCATION_OUT", yaml=False, metavar="FILE",
                              help="output JSON file, a path ending in .json (default $OUTPUT_DIR/allocation/<name>.json)")
    reference: str | None = setting(None, env="REFERENCE_ALLOCATION", yaml=False,
                                    help="allocation (name or file) to compare parameters with, e.g. layermoe or a "
                                         "shipped one such as llama-3.2-3b-el-layermoe")
    compare_with: str | None = setting(None, env="COMPARE_WITH", yaml=False,
                                       help="draw the paper's Figure 1 against this allocation (name or file); also "
                                            "the --reference when none is given")
    figure: str | None = setting(None, env="ALLOCATION_FIGURE", yaml=False, metavar="STEM",
                                 help="figure path stem, PNG + PDF (default $OUTPUT_DIR/figures/allocation_<name>_vs_<other>)")
    # ---- how much to trust the allocation (docs/allocation.md "Stability") ------------------------------------
    bootstrap: int = setting(0, range=(0, None), yaml=False, metavar="N",
                             help="resample each language's analysis sentences with replacement N times and recompute AP, "
                                  "selection and allocation from the stored activations: allocation/<name>.stability.json "
                                  "(0 = no bootstrap; neuron modes only)")
    sample_sizes: list[int] | None = setting(None, parse=_ints, yaml=False, metavar="N,N,...",
                                             help="also subsample N sentences per language without replacement (--bootstrap "
                                                  "replicates each) and record the same statistics per size, with a figure")
    sensitivity: bool = setting(False, switch=True, yaml=False,
                                help="write the threshold grid (--grid-top-k x --grid-ap-thresholds) even without "
                                     "--bootstrap (it is part of every stability file)")
    grid_top_k: list[int] = setting(parse=_ints, help="top-k values of the sensitivity grid")
    grid_ap_thresholds: list[float] = setting(parse=_floats, help="AP thresholds of the sensitivity grid")
    stability_seed: int = setting(0, yaml=False, help="seed of the resampling (replicate r uses (seed, size, r))")
    bootstrap_margin: float = setting(range=(0, 1), lo_open=True,
                                      help="replicate AP is computed for the units whose full-sample AP is within this of "
                                           "the selection cutoff, at 100 sentences per language (x sqrt(100/n) at n; "
                                           "doubled until the verification passes; 1 = every unit)")
    bootstrap_verify: int = setting(range=(0, None),
                                    help="replicates also recomputed over every unit to verify the margin (0 = none)")
    device: str = setting("auto", yaml=False, help="torch device of the AP recomputation: auto (a GPU if there is one), "
                                                   "cpu, cuda, cuda:1 ...")
    progress: bool = setting(True, flag="--no-progress", switch=False, yaml=False, help="no progress bars")

    @classmethod
    def resolve(cls, flags: Any = None, *, environ: Mapping[str, str] | None = None, **kw: Any) -> AllocateSettings:
        """As :meth:`Settings.resolve`; without SOURCE_LANG the first of OLD_LANGS is the source."""
        environ = os.environ if environ is None else environ
        old = parse_list(environ.get("OLD_LANGS"))
        if old and not environ.get("SOURCE_LANG"):
            environ = {**environ, "SOURCE_LANG": old[0]}
        return super().resolve(flags, environ=environ, **kw)  # type: ignore[return-value]

    @property
    def stability_requested(self) -> bool:
        return bool(self.bootstrap or self.sample_sizes or self.sensitivity)

    def explicit(self, name: str) -> bool:
        """True when ``name`` was given on the command line, by a variable or ``--set`` (not by a YAML file)."""
        where = self.provenance().get(name, "")
        return where == "caller" or where.startswith(("--", "env "))

    def check(self) -> None:
        from neuronmoe.allocation.core import bound_problem
        from neuronmoe.languages import check_languages

        problem = bound_problem(self.e_min, self.e_max)
        if problem:
            self.fail(problem[0], problem[1])
        try:
            check_languages([self.source_lang], self.source("source_lang"))
            if self.targets:
                check_languages(list(self.targets), self.source("targets"))
        except ValueError as e:  # languages.UnknownLanguageError: a bad setting
            raise ConfigError(str(e)) from None
        if self.source_lang in self.targets:
            self.fail("targets", f"the source language {self.source_lang!r} cannot also be a target")
        self._check_mode()
        self._check_out()
        self._check_stability()

    def _check_mode(self) -> None:
        if self.scores_csv:
            if self.explicit("mode") and self.mode != "scores-csv":
                self.fail("scores_csv", f"give either --scores-csv or --mode {self.mode}, not both")
            self.mode = "scores-csv"
        elif self.mode == "scores-csv":
            self.fail("mode", "scores-csv is what --scores-csv FILE selects; give the file")

    def _check_out(self) -> None:
        if self.out is None:
            return
        if not str(self.out).endswith(".json"):
            self.fail("out", f"{self.out!r} is not a .json file path (the .env is written beside it)")
        if Path(self.out).is_dir():
            self.fail("out", f"{self.out} is a folder; give the JSON file's path")

    def _check_stability(self) -> None:
        self.sample_sizes = self._numbers("sample_sizes", int, lo=1) if self.sample_sizes else None
        self.grid_top_k = self._numbers("grid_top_k", int, lo=1)
        self.grid_ap_thresholds = self._numbers("grid_ap_thresholds", float, lo=0.0)
        if any(t >= 1 for t in self.grid_ap_thresholds):
            self.fail("grid_ap_thresholds", "every AP threshold must lie in [0, 1)")
        if self.stability_requested and self.mode not in NEURON_MODES:
            flag = "bootstrap" if self.bootstrap else "sample_sizes" if self.sample_sizes else "sensitivity"
            self.fail(flag, f"stability is measured for allocations from neuron results (--mode pair, multi or "
                            f"source-only), not --mode {self.mode}")
        if self.sample_sizes and not self.bootstrap:
            self.fail("sample_sizes", "needs --bootstrap N: the replicates drawn at each size")

    def _numbers(self, name: str, kind: type, lo: float) -> list[Any]:
        out = []
        for v in getattr(self, name) or []:
            try:
                x = kind(v)
            except (TypeError, ValueError):
                self.fail(name, f"{v!r} is not {'a whole number' if kind is int else 'a number'}")
            if x < lo:
                self.fail(name, f"{x!r} is below {lo:g}")
            out.append(x)
        return sorted(set(out))


COMMANDS = [Command(
    "allocate", AllocateSettings, "neuronmoe.allocation.runner:main",
    help="experts per layer from neuron counts (NeuronMoE), similarity (LayerMoE), a CSV or uniform",
    description="Turn per-layer scores into experts per layer (E counts the frozen original MLP as expert 0) and write "
    "$OUTPUT_DIR/allocation/<name>.json and <name>.env; with --bootstrap N also <name>.stability.json (how much the "
    "allocation would change with another sample of sentences, fewer sentences or other thresholds; see "
    "docs/allocation.md). Defaults: neuronmoe/configs/allocation.yaml.")]
