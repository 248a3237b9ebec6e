from neuronmoe.cli import main
from neuronmoe.utils.work import install_from_env

if __name__ == "__main__":
    install_from_env()  # the pipeline's per-stage token and FLOP counts ($NEURONMOE_WORK_FILE); nothing otherwise
    raise SystemExit(main())
