"""lm-eval task YAMLs shipped with neuronmoe (a package so that utils.py files are installed)."""
