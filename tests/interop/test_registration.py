"""Lazy PEFT registration: `import neuronmoe` is cheap, and every process that loads an adapter has the method."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from interop_helpers import EPL_TINY, TINY_VOCAB, make_adapter, subprocess_env

HEAVY = ("torch", "transformers", "peft", "lm_eval", "datasets", "accelerate", "numpy")


def _run(code: str, tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(tmp_path))


def test_cli_start_imports_no_heavy_library(tmp_path):
    """`neuronmoe --help` builds the whole parser without torch, transformers, peft, lm-eval, datasets, numpy."""
    res = _run(f"""
        import sys
        import neuronmoe.cli
        neuronmoe.cli.build_parser()
        heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))
        print(heavy)
        sys.exit(1 if heavy else 0)
    """, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "neuronmoe", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "export" in res.stdout and "lm-eval" in res.stdout


@pytest.mark.slow  # over 5 s: the full suite (CI) runs it, the fast lane does not
def test_fresh_process_registers_on_first_peft_import_and_the_load_line_works(tmp_path):
    """`import neuronmoe`, then probes for peft (transformers does `find_spec("peft")`), then `import peft`:
    the method is registered; and the line written into adapter_config.json loads the adapter."""
    from neuronmoe.testing import save_tiny_model

    base = save_tiny_model(tmp_path / "base", "llama", vocab_size=TINY_VOCAB)
    adapter = make_adapter(base, tmp_path / "adapter", EPL_TINY)
    line = json.loads((adapter / "adapter_config.json").read_text())["how_to_load"]
    assert line.startswith("import neuronmoe, peft, transformers;") and repr(str(base)) in line
    line = line.replace("'path/to/this/adapter'", repr(str(adapter)))
    res = _run(f"""
        import importlib.util, sys
        import neuronmoe
        from neuronmoe import _peft_hook
        assert 'peft' not in sys.modules and 'torch' not in sys.modules and _peft_hook.pending()
        assert importlib.util.find_spec('peft') is not None   # a probe, not an import
        import transformers, accelerate
        from transformers.utils import is_peft_available
        assert is_peft_available() and _peft_hook.pending()
        {line}
        import peft
        assert not _peft_hook.pending() and type(peft.__spec__.loader).__name__ == 'SourceFileLoader'
        assert type(model).__name__ == 'PeftModelForCausalLM' and sum(1 for n, _ in model.named_modules() if n.endswith('moe_router')) == 2
        print('ok')
    """, tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_analysis_package_keeps_the_function_expert_ap_whatever_is_imported_first(tmp_path):
    """analysis/ exports lazily; `expert_ap` is both a function there and its submodule's name."""
    for first in ("import neuronmoe.analysis.runner", "from neuronmoe.analysis import summarize"):
        res = _run(f"""
            {first}
            from neuronmoe.analysis import expert_ap
            from neuronmoe.analysis.expert_ap import expert_units
            import neuronmoe.analysis as a
            assert callable(expert_ap) and a.expert_ap is expert_ap and callable(expert_units)
        """, tmp_path)
        assert res.returncode == 0, (first, res.stderr[-2000:])


def test_failed_registration_warns_and_does_not_break_peft(monkeypatch):
    from neuronmoe import _peft_hook

    def boom():
        raise RuntimeError("incompatible peft")

    monkeypatch.setattr(_peft_hook, "register_peft", boom)
    monkeypatch.delitem(sys.modules, "neuronmoe.moe")
    with pytest.warns(RuntimeWarning, match="could not register its NEURONMOE PEFT method.*incompatible peft"):
        _peft_hook._register_quietly()


def test_install_after_peft_adds_no_finder_and_leaves_the_method_registered():
    import peft  # noqa: F401
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from neuronmoe import _peft_hook
    from neuronmoe.moe import MoEConfig

    _peft_hook.install()
    assert not _peft_hook.pending() and PEFT_TYPE_TO_CONFIG_MAPPING["NEURONMOE"] is MoEConfig
