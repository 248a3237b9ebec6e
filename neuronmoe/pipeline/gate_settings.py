"""Settings of ``neuronmoe allocation-gate`` (the paper run's check of its computed allocations; :mod:`.gate`)."""
from __future__ import annotations

from dataclasses import dataclass

from neuronmoe.settings import Command, Settings, setting


@dataclass(kw_only=True)
class GateSettings(Settings):
    COMMAND = "allocation-gate"

    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR",
                              help="output root whose allocation/<name>.json are checked")
    model_config: str = setting("llama-3.2-3b", env="PAPER_MODEL_CONFIG", yaml=False,
                                help="shipped model config naming the paper's allocations ({model_config}-{target}-{kind})")
    allocations: list[str] = setting(default_factory=list, yaml=False, metavar="NAME=KIND/TARGET,...",
                                     help="the allocations to check, e.g. layermoe=layermoe/el,neuronmoe-el=neuronmoe/el")
    accept_allocation_diff: bool = setting(False, switch=True, env="ACCEPT_ALLOCATION_DIFF", yaml=False,
                                           help="let allocations that differ from the paper's through (recorded in "
                                                "pipeline/allocation_gate.json and the report)")

    def check(self) -> None:
        if not self.allocations:
            self.fail("allocations", "give at least one NAME=KIND/TARGET")


COMMANDS = [Command(
    "allocation-gate", GateSettings, "neuronmoe.pipeline.gate:run_gate",
    help="paper run: stop before training when a computed allocation differs from the paper's",
    description="Compare every named allocation of $OUTPUT_DIR/allocation/ layer by layer with the paper's "
    "(Tables 2, 8, 9), write pipeline/allocation_gate.json, and exit 2 with the per-layer difference unless "
    "--accept-allocation-diff is given. Allocations the paper does not publish are recorded as 'no paper reference'.")]
