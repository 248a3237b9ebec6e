"""NeuronMoE models in the tools researchers already use (docs/export.md).

* :mod:`.lm_eval_cli`: ``neuronmoe lm-eval ARGS...`` is lm-eval's own command line with the
  NEURONMOE PEFT method registered first (``--model_args pretrained=BASE,peft=ADAPTER``);
* :mod:`.export`: ``neuronmoe export`` writes base + adapter as one ordinary Hugging Face model
  folder that loads with ``trust_remote_code=True`` in a Python without neuronmoe;
* :mod:`.modeling_neuronmoe`: the modeling file shipped inside every exported folder.

Only :mod:`.settings` (the two subcommands) is imported by ``neuronmoe --help``.
"""
