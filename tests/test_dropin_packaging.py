"""Packaging for use outside the course: safe_load needs only torch, a missing extra says what to
install, and the split manifests are found where the package keeps them."""

import subprocess
import sys

import pytest


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_safe_load_needs_only_torch():
    """A service that only verifies and loads checkpoints must not import Lightning (the drop-in review)."""
    loaded = _modules_after("from toolkit.security import safe_load, sha256_file")
    assert "torch" in loaded and "pytorch_lightning" not in loaded and "lightning" not in loaded
    assert "opacus" not in loaded


def test_a_missing_extra_names_the_pip_install_that_provides_it(monkeypatch):
    from toolkit._extras import require

    monkeypatch.setitem(sys.modules, "opacus", None)  # as if opacus were not installed
    with pytest.raises(ImportError, match=r'pip install "dl-course-toolkit\[security\]"'):
        require("opacus", "security", "DPClassifierModule (DP-SGD)")


def test_split_manifests_are_found_as_package_data():
    from toolkit.governance.card import MANIFEST_DIR

    assert MANIFEST_DIR.parent.name == "toolkit", "importlib.resources finds toolkit/manifests"
    assert (MANIFEST_DIR / "digits.json").is_file()
