"""The runtime package must never import torch: a line PC installs it without."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import inspector

# The dashboard module launches Streamlit and the demo trains a model: both are allowed extras.
ALLOWED_TO_NEED_EXTRAS = {"inspector.demo"}


def runtime_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(inspector.__path__, "inspector.")]
    return sorted(name for name in names if name not in ALLOWED_TO_NEED_EXTRAS)


def test_importing_every_runtime_module_does_not_import_torch() -> None:
    modules = runtime_modules()
    assert "inspector.core.preprocess" in modules and "inspector.cli" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not leaked, leaked[:5]\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
