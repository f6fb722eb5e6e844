"""``import toolkit`` is cheap: subpackages load on first use, and the models never pull in Lightning."""

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_import_toolkit_loads_neither_torch_nor_lightning():
    loaded = _modules_after("import toolkit")
    assert "torch" not in loaded and "pytorch_lightning" not in loaded


def test_models_need_only_torch():
    loaded = _modules_after("import toolkit.models")
    assert "torch" in loaded and "pytorch_lightning" not in loaded and "sklearn" not in loaded


def test_subpackages_load_on_attribute_access():
    loaded = _modules_after("import toolkit; toolkit.training")
    assert "toolkit.training" in loaded
