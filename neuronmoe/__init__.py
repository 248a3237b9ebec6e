"""NeuronMoE: neuron-guided Mixture-of-Experts for multilingual LLM extension.

Importing the package registers the ``NEURONMOE`` PEFT method (idempotently), so that
``peft.get_peft_model``, ``PeftModel.from_pretrained`` and Trainer checkpoints work in
every process that imports ``neuronmoe``.
"""
__version__ = "0.1.0"


def _register_peft() -> None:
    try:
        from neuronmoe.moe import register
    except ModuleNotFoundError as e:  # the adapter subpackage is optional only while it is absent
        if e.name in ("neuronmoe.moe", "peft"):
            return
        raise
    register()


_register_peft()
