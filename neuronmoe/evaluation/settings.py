"""Settings of ``neuronmoe evaluate`` and ``neuronmoe report`` (defaults: ``neuronmoe/configs/evaluate.yaml`` and
``report.yaml``; the suites themselves are ``eval_suites.yaml``). docs/evaluation.md describes both commands."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from neuronmoe.settings import Command, DeviceSettings, ModelOutputSettings, Settings, setting


def parse_sizes(text: str) -> dict[str, int]:
    """``"cloze_items=40, heldout_docs=8"`` -> ``{"cloze_items": 40, "heldout_docs": 8}`` (``--local-sizes``)."""
    out: dict[str, int] = {}
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"expected key=value, got {part!r}")
        try:
            out[key.strip()] = int(value.strip())
        except ValueError:
            raise ValueError(f"{key.strip()} must be an integer, got {value.strip()!r}") from None
    return out


def _batch_size_ok(text: str) -> bool:
    if text == "auto" or (text.startswith("auto:") and text[5:].isdigit() and int(text[5:]) >= 1):
        return True
    return text.isdigit() and int(text) >= 1


@dataclass(kw_only=True)
class EvaluateSettings(DeviceSettings, ModelOutputSettings):
    COMMAND = "evaluate"
    YAML = "evaluate"

    adapter: str | None = setting(None, env="PEFT_MODEL_PATH", yaml=False, metavar="DIR",
                                  help="MoE adapter folder (adapter_config.json); omit for the dense base")
    suite: str | None = setting(None, env="EVAL_SUITE",
                                help="suite of neuronmoe/configs/eval_suites.yaml: paper (hub datasets) or local (offline, built "
                                     "from $OUTPUT_DIR/data); default local unless --tasks")
    tasks: list[str] = setting(default_factory=list, env="EVAL_TASKS", metavar="TASKS",
                               help="comma-separated lm-eval task/group names instead of (or with --suite, in addition to) a suite")
    languages: list[str] = setting(default_factory=list, env="EVAL_LANGUAGES", metavar="LANGS",
                                   help="ISO 639-1 codes for the suite, e.g. en,el (default: the suite's list)")
    num_fewshot: int | None = setting(None, env="EVAL_NUM_FEWSHOT", range=(0, None), metavar="N",
                                      help="override every task's number of shots (default: the suite's shots per benchmark and "
                                           "language, else the task's own)")
    profile: str | None = setting(None, env="EVAL_PROFILE",
                                  help="shots profile of the suite: paper (the paper's text, default) or published-script (10-shot "
                                       "HellaSwag, 5-shot Belebele, 4-shot tr/hu MMLU)")
    shots: str | None = setting(None, env="EVAL_SHOTS", metavar="SHOTS",
                                help="shots per benchmark or cell after the profile, e.g. hellaswag=10,mmlu/tr=5@validation "
                                     "(@split: draw them from that split)")
    allow_unpinned: bool = setting(False, switch=True, env="EVAL_ALLOW_UNPINNED", yaml=False,
                                   help="let the paper suite load datasets whose revision eval_suites.yaml does not pin (the hub's "
                                        "current main, resolved to its commit and recorded per cell)")
    batch_size: str = setting("8", env="EVAL_BATCH_SIZE", metavar="N",
                              help="lm-eval batch size: an int, or auto / auto:N")
    limit: float | None = setting(None, env="EVAL_LIMIT", range=(0, None), lo_open=True, metavar="N",
                                  help="at most this many documents per task (a fraction if < 1); for smoke tests only")
    run_name: str | None = setting(None, env="EVAL_RUN_NAME", name_like=True, yaml=False, metavar="NAME",
                                   help="run folder under $OUTPUT_DIR/eval/ (default <adapter's run>-<suite> or base-<suite>)")
    results_dir: str | None = setting(None, env="OUTPUT_PATH", yaml=False, metavar="DIR",
                                      help="write results.json + manifest.json here instead of $OUTPUT_DIR/eval/<run>")
    label: str | None = setting(None, env="EVAL_LABEL", yaml=False, metavar="LABEL",
                                help="model name shown by `neuronmoe report` (default the run name)")
    seed: int = setting(1234, env="EVAL_SEED", env_aliases=("SEED",),
                        help="lm-eval seeds (python, numpy, torch, few-shot sampling)")
    local_sizes: dict = setting(default_factory=dict, env="EVAL_LOCAL_SIZES", parse=parse_sizes, metavar="SIZES",
                                help="local suite sizes as key=value,... e.g. cloze_items=40,heldout_docs=8 (defaults in "
                                     "eval_suites.yaml)")
    include_path: list[str] = setting(default_factory=list, flag=None, yaml=False,
                                      help="extra folder of lm-eval task YAMLs (--include-path, repeatable)")
    log_samples: bool = setting(False, switch=True, yaml=False,
                                help="also keep lm-eval's full per-document samples in <run>/samples/ (per-item scores are always "
                                     "kept in <run>/items/)")
    overwrite: bool = setting(False, switch=True, yaml=False,
                              help="replace results in the run folder made with other inputs (cells whose inputs are unchanged are "
                                   "reused either way)")
    max_length: int | None = setting(None, range=(16, None), metavar="TOKENS",
                                     help="lm-eval max_length: prompts longer than this many tokens are cut from the left (default: "
                                          "the model's context; for smoke tests)")
    check_only: bool = setting(False, flag="--check", switch=True, yaml=False,
                               help="load every cell's data (network or cache), check fields, splits, few-shot rows, few-shot/test "
                                    "overlap, item counts and revisions, print one table and exit (no model is loaded; exit 1 if a "
                                    "cell fails)")
    dataset_replicas: str | None = setting(None, yaml=False, metavar="DIR",
                                           help="TESTS ONLY: read every hub dataset from the local replicas in this folder "
                                                "(tests/evaluation/replicas.py builds them); results are marked as replica data")

    def check(self) -> None:
        bad = [k for k, v in self.local_sizes.items() if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            self.fail("local_sizes", f"{', '.join(bad)} must be integers")
        if not _batch_size_ok(str(self.batch_size)):
            self.fail("batch_size", f"expected an int >= 1, auto or auto:N, got {self.batch_size!r}")
        if self.suite is None and self.tasks:
            if self.local_sizes:
                self.fail("local_sizes", "applies to --suite local only")
            if self.profile or self.shots:
                self.fail("profile" if self.profile else "shots", "--profile and --shots apply to a --suite; with --tasks use "
                          "--num-fewshot")

    @property
    def effective_suite(self) -> str | None:
        """The suite this run evaluates: ``--suite``, else ``local`` unless ``--tasks`` names the tasks."""
        return self.suite or (None if self.tasks else "local")

    def default_run_name(self) -> str:
        """``<adapter's run>-<suite>`` (the folder above ``adapter/``), or ``base-<suite>``."""
        what = self.effective_suite or "tasks"
        if self.adapter:
            a = Path(self.adapter).resolve()
            return f"{a.parent.name if a.name == 'adapter' else a.name}-{what}"
        return f"base-{what}"


@dataclass(kw_only=True)
class ReportSettings(Settings):
    COMMAND = "report"
    YAML = "report"

    runs: list[str] = setting(default_factory=list, flag=None, yaml=False,
                              help="run folders or results.json files (default: every $OUTPUT_DIR/eval/*/results.json)")
    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR", help="root folder of every stage's outputs")
    out: str | None = setting(None, env="REPORT_PATH", yaml=False, metavar="STEM",
                              help="output stem: writes STEM.md and STEM.csv (default $OUTPUT_DIR/eval/table)")
    relative_to: str | None = setting(None, metavar="LABEL",
                                      help="label of the run whose #experts the others are compared with (default: the MoE run "
                                           "with most experts)")
    baselines: list[str] = setting(default_factory=lambda: ["Dense", "LayerMoE-S1"], env="REPORT_BASELINES", metavar="LABELS",
                                   help="labels of the runs every other run is tested against, paired on the same items")
    paper: bool = setting(False, switch=True, yaml=False,
                          help="also put the paper's Table 1 / 3 / 11 values beside ours, with what each gap can mean")


def _evaluate_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include-path", dest="include_path", action="append", default=None, metavar="DIR",
                   help="extra folder of lm-eval task YAMLs (repeatable)")


def _report_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=argparse.SUPPRESS, type=str,
                   help="run folders or results.json files (default: every $OUTPUT_DIR/eval/*/results.json)")


COMMANDS = [
    Command("evaluate", EvaluateSettings, "neuronmoe.evaluation.stage:evaluate_main", extra=_evaluate_extra,
            help="evaluate a base model or base + MoE adapter with lm-eval (suites: paper, local)",
            description="Evaluate a dense base or base + NeuronMoE adapter in-process through lm-eval; writes "
            "$OUTPUT_DIR/eval/<run>/results.json (lm-eval JSON), per-cell and per-item files, and manifest.json "
            "(docs/evaluation.md). Defaults: neuronmoe/configs/evaluate.yaml and eval_suites.yaml."),
    Command("report", ReportSettings, "neuronmoe.evaluation.stage:report_main", extra=_report_extra,
            help="turn evaluation runs into the paper's Table 1 (Markdown + CSV)",
            description="Collect results.json of several runs into one table: model, #experts, added parameters, each "
            "benchmark for English and the target language(s), with standard errors, paired tests and the cloze baselines."),
]

__all__ = ["COMMANDS", "EvaluateSettings", "ReportSettings", "parse_sizes"]
