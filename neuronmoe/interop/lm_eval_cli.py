"""``neuronmoe lm-eval ARGS...``: lm-eval's own command line, with the NEURONMOE PEFT method registered.

The arguments go to lm-eval 0.4.13's CLI unchanged (``run`` is implied, ``ls`` and ``validate``
work too), so every flag, ``--include_path``, ``--log_samples``, ``--output_path`` and
``--model_args pretrained=BASE,peft=ADAPTER`` mean what they mean for ``lm_eval``. Each process
registers the method before lm-eval starts, so multi-GPU runs through a launcher work as they
do for ``lm_eval`` (``accelerate launch -m neuronmoe lm-eval ...``: every rank runs this module).
"""
from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    """Run lm-eval's CLI on ``argv`` in this process; its exit status."""
    from neuronmoe import register_peft

    register_peft()
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *argv]  # lm-eval's CLI reads sys.argv itself
    try:
        cli_evaluate()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0)
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
