"""NeuronMoE: neuron-guided Mixture-of-Experts for multilingual LLM extension.

Importing the package is cheap (no torch, transformers or peft) and makes sure the
``NEURONMOE`` PEFT method gets registered in this process: at once when ``peft`` is already
imported, else right after the first ``import peft`` (see :mod:`neuronmoe._peft_hook`). So
``peft.get_peft_model``, ``PeftModel.from_pretrained`` and Trainer checkpoints work in every
process that imports ``neuronmoe``; ``neuronmoe.register_peft()`` registers explicitly.
"""
__version__ = "0.1.0"

from neuronmoe._peft_hook import install as _install_peft_hook
from neuronmoe._peft_hook import register_peft

_install_peft_hook()

__all__ = ["__version__", "register_peft"]
