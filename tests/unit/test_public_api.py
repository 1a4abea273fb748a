"""`inspector`'s public API: every name in __all__ loads, nothing public is left out, and importing
the package starts neither ONNX Runtime nor torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import inspector


def test_every_exported_name_loads_from_the_module_that_defines_it() -> None:
    for name in inspector.__all__:
        value = getattr(inspector, name)
        assert value is not None, name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("inspector"), name


def test_every_error_class_is_exported() -> None:
    import inspector.errors as errors

    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == errors.__name__}
    assert classes and classes <= set(inspector.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        inspector.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("a missing name must raise AttributeError")


def test_importing_the_package_loads_no_engine() -> None:
    code = ("import sys, inspector; inspector.InspectConfig; "
            "print(','.join(m for m in ('onnxruntime', 'torch', 'cv2') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert set(inspector.__all__) == {"__version__"} | set(inspector._EXPORTS)
    assert len(inspector.__all__) == len(set(inspector.__all__))
