"""Settings of ``neuronmoe export``, and ``neuronmoe lm-eval`` (lm-eval's own command line; docs/export.md)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from neuronmoe.settings import Command, Settings, setting

LM_EVAL_COMMAND = "lm-eval"
#: --dtype spellings of the export (``neuronmoe.interop.export.EXPORT_DTYPES``); auto = the base checkpoint's dtype
EXPORT_DTYPE_CHOICES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


@dataclass(kw_only=True)
class ExportSettings(Settings):
    COMMAND = "export"

    adapter: str | None = setting(None, env="PEFT_MODEL_PATH", parse=str, metavar="DIR",
                                  help="NeuronMoE adapter folder (adapter_config.json); required")
    out: str | None = setting(None, parse=str, metavar="DIR", help="folder to write; must not exist unless --overwrite; required")
    model: str | None = setting(None, env="BASE_MODEL_PATH", metavar="MODEL",
                                help="base model (alias, local folder or hub id) (default: the adapter's base_model_name_or_path)")
    dtype: str = setting("auto", parse=str.lower, choices=EXPORT_DTYPE_CHOICES,
                         help="weight dtype of the export (routers stay float32); auto = the base checkpoint's dtype")
    device: str = setting("cpu", help="device used to load and merge")
    overwrite: bool = setting(False, switch=True, yaml=False, help="replace --out if it exists")
    push_to_hub: str | None = setting(None, metavar="REPO",
                                      help="after writing, upload the folder to this Hugging Face Hub repository (needs a "
                                           "token: `huggingface-cli login` or HF_TOKEN)")
    private: bool = setting(False, switch=True, help="with --push-to-hub: create the repository as private")

    def check(self) -> None:
        if not self.adapter:
            self.fail("adapter", "required: the NeuronMoE adapter folder (or env PEFT_MODEL_PATH)")
        if not self.out:
            self.fail("out", "required: the folder to write")


@dataclass(frozen=True)
class PassThrough(Command):
    """A subcommand whose arguments all belong to another program's parser: listed in ``neuronmoe --help``;
    :func:`neuronmoe.cli.main` hands it every argument after its name before argparse sees them."""

    def register(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = sub.add_parser(self.name, add_help=False, help=self.help, description=self.description)
        p.set_defaults(func=self.invoke)
        return p

    def invoke(self, args: argparse.Namespace) -> int:  # reached only without arguments (main dispatches first)
        from neuronmoe.interop.lm_eval_cli import run

        return run([])


COMMANDS = [
    PassThrough(LM_EVAL_COMMAND, Settings, "neuronmoe.interop.lm_eval_cli:run",
                help="lm-eval's own command line (every flag of `lm_eval`) with the NEURONMOE PEFT method registered: "
                "--model hf --model_args pretrained=BASE,peft=ADAPTER --tasks ...",
                description="Runs lm-eval 0.4.13's CLI on the arguments that follow; `neuronmoe lm-eval --help` prints "
                "lm-eval's help."),
    Command("export", ExportSettings, "neuronmoe.interop.export:main",
            help="write base model + MoE adapter as one Hugging Face model folder (loads with trust_remote_code=True, "
            "no neuronmoe needed)",
            description="Export a NeuronMoE adapter merged with its base model into an ordinary Hugging Face model folder: "
            "config.json with auto_map, safetensors weights, tokenizer, modeling_neuronmoe.py and a model card. "
            "AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True) then loads it anywhere."),
]
