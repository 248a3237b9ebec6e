"""The miniature reproduction's plan: which ``neuronmoe`` commands run, in which order, reading what."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stage:
    name: str
    argv: list[str]  # arguments after `neuronmoe`
    marker: str  # path (relative to the output dir) whose existence marks completion
    deps: list[str] = field(default_factory=list)
    kind: str = ""  # "train" stages get --resume / --overwrite at run time ("eval": --overwrite when inputs changed)
    launch: list[str] | None = None  # what runs it (``torchrun ... -m neuronmoe``); None: ``python -m neuronmoe``


@dataclass
class PipelineConfig:
    output_dir: str = "outputs"
    model: str = "smollm2-135m"
    source: str = "en"
    target: str = "el"
    old_langs: list[str] | None = None  # old languages kept (replay, LayerMoE's old group); None = [source]
    neg_langs: list[str] = field(default_factory=lambda: ["tr", "hu", "de", "es", "fr", "ja", "zh"])
    num_sentences: int = 200
    profile: str = "auto"
    eval_suite: str = "local"
    analysis_limit: int = 0
    extra: dict[str, list[str]] = field(default_factory=dict)  # stage name -> extra CLI args
    bootstrap: int = 100  # allocate-neuronmoe --bootstrap: replicates of its stability analysis (0: none)
    sample_sizes: list[int] = field(default_factory=lambda: [50, 100])  # ... and --sample-sizes (sentences per language)

    def stability_args(self) -> list[str]:
        """``allocate`` flags of the stability analysis (docs/allocation.md, "Stability")."""
        if not self.bootstrap:
            return []
        sizes = ["--sample-sizes", ",".join(map(str, self.sample_sizes))] if self.sample_sizes else []
        return ["--bootstrap", str(self.bootstrap), *sizes, "--no-progress"]

    @property
    def old(self) -> list[str]:
        """The old languages, the source first."""
        return list(dict.fromkeys([self.source, *(self.old_langs or [])]))

    @property
    def languages(self) -> list[str]:
        """Every neuron-analysis language: source, target, the other old languages, the negatives."""
        return list(dict.fromkeys([self.source, self.target, *self.old, *self.neg_langs]))

    def validate(self) -> None:
        """Checked before anything is planned or run: known codes, one new language not among the old ones."""
        from neuronmoe.languages import check_languages

        check_languages([self.target], "--target")
        check_languages(self.old, "--old-langs")
        check_languages(list(self.neg_langs), "--neg-langs")
        if self.target in self.old:
            raise ValueError(f"--target {self.target}: it is also an old language ({','.join(self.old)}); they must differ")


#: Table-1 rows of the miniature report: (label, eval run, allocation name or None)
TABLE_ROWS = [
    ("Dense", "dense", None),
    ("LayerMoE-S1", "layermoe-s1", "layermoe"),
    ("NeuronMoE-EN", "neuronmoe-en-s1", "neuronmoe-en"),
    ("NeuronMoE-S1", "neuronmoe-s1", "neuronmoe"),
    ("NeuronMoE", "neuronmoe-s2", "neuronmoe"),
]


def plan(cfg: PipelineConfig) -> list[Stage]:
    """The stages of the miniature reproduction, in execution order."""
    cfg.validate()
    o, m = cfg.output_dir, cfg.model
    common = ["--output-dir", o, "--model", m]
    langs = ",".join(cfg.languages)
    old = ",".join(cfg.old)
    sim_old = ["--old-langs", old] if cfg.old != [cfg.source] else []
    st: list[Stage] = [
        Stage("data", ["prepare-data", *common, "--new-langs", cfg.target, "--old-langs", old,
                       "--neg-langs", ",".join(x for x in cfg.languages if x != cfg.target and x not in cfg.old),
                       "--num-sentences", str(cfg.num_sentences)], "data/manifest.json"),
        Stage("neurons", ["neurons", *common, "--languages", langs], "neurons/manifest.json", ["data"]),
        Stage("similarity", ["similarity", *common, "--source", cfg.source, "--targets", cfg.target, *sim_old,
                             "--name", "layermoe"],
              "similarity/manifest.json", ["data"]),
        Stage("allocate-neuronmoe", ["allocate", "--output-dir", o, "--model", m, "--mode", "pair", "--source", cfg.source,
                                     "--targets", cfg.target, "--name", "neuronmoe", "--compare-with", "layermoe",
                                     *cfg.stability_args()],
              "allocation/neuronmoe.json", ["neurons", "similarity"]),
        Stage("allocate-neuronmoe-en", ["allocate", "--output-dir", o, "--model", m, "--mode", "source-only",
                                        "--source", cfg.source, "--targets", cfg.target, "--name", "neuronmoe-en",
                                        "--reference", "layermoe"],
              "allocation/neuronmoe-en.json", ["neurons", "similarity"]),
    ]
    train_common = ["--stage", "1", *common, "--languages", cfg.target, "--profile", cfg.profile]
    for alloc, dep in (("layermoe", "similarity"), ("neuronmoe-en", "allocate-neuronmoe-en"), ("neuronmoe", "allocate-neuronmoe")):
        st.append(Stage(f"train-{alloc}-s1", ["train", *train_common, "--allocation", alloc, "--run-name", f"{alloc}-s1"],
                        f"train/{alloc}-s1/manifest.json", ["data", dep], kind="train"))
    st.append(Stage("train-neuronmoe-s2", ["train", "--stage", "2", *common, "--allocation", "neuronmoe", "--run-name", "neuronmoe-s2",
                                           "--languages", cfg.target, "--replay-languages", old, "--profile", cfg.profile,
                                           "--init-adapter", f"{o}/train/neuronmoe-s1/adapter"],
                    "train/neuronmoe-s2/manifest.json", ["data", "train-neuronmoe-s1"], kind="train"))
    eval_langs = ",".join([cfg.source, cfg.target])
    for label, run, _alloc in TABLE_ROWS:
        argv = ["evaluate", *common, "--suite", cfg.eval_suite, "--languages", eval_langs, "--run-name", run, "--label", label,
                "--overwrite"]
        deps = ["data"]
        if run != "dense":
            argv += ["--adapter", f"{o}/train/{run}/adapter"]
            deps.append(f"train-{run}")
        st.append(Stage(f"eval-{run}", argv, f"eval/{run}/manifest.json", deps))
    ana = ["analyze-experts", *common, "--run", "neuronmoe-s1", "--target", cfg.target, "--languages", langs, "--force"]
    if cfg.analysis_limit:
        ana += ["--limit", str(cfg.analysis_limit)]
    st.append(Stage("analyze-experts", ana, "analysis/manifest.json", ["data", "train-neuronmoe-s1"]))
    st.append(Stage("figures", ["figures", "--output-dir", o, "--target", cfg.target], "figures/manifest.json",
                    ["neurons", "allocate-neuronmoe", "similarity", "analyze-experts", "train-layermoe-s1",
                     "train-neuronmoe-en-s1", "train-neuronmoe-s1", "train-neuronmoe-s2"]))
    names = {s.name for s in st}
    for s in st:
        s.argv += cfg.extra.get(s.name, [])
        missing = [d for d in s.deps if d not in names]
        if missing:  # pragma: no cover - a programming error in the table above
            raise AssertionError(f"{s.name}: unknown deps {missing}")
    return st
