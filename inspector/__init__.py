"""board-inspector runtime: ONNX inference, heatmaps, thresholds, feeds, results store, CLI.

Nothing in this package may import torch: a line PC installs it with ONNX Runtime and OpenCV only.

The public API is below; each name is loaded on first use, so `import inspector` (and the CLI's
`--help`) does not start ONNX Runtime. A notebook does what the CLI does:

    from inspector import Inspector, InspectConfig, load_image
    engine = Inspector.load("bundle", InspectConfig())
    result = engine.inspect(load_image("board.png"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # engine and results
    "Inspector": "inspector.core.engine",
    "InspectionResult": "inspector.core.results",
    "Region": "inspector.core.results",
    "Verdict": "inspector.verdicts",
    "PreprocessSpec": "inspector.core.preprocess",
    "preprocess": "inspector.core.preprocess",
    "ScoringSpec": "inspector.core.scoring",
    "load_image": "inspector.core.imageio",
    "decode_image": "inspector.core.imageio",
    "recalibrate": "inspector.core.calibration",
    "verify_bundle": "inspector.bundle.files",
    # settings
    "Settings": "inspector.config",
    "TrainConfig": "inspector.config",
    "InspectConfig": "inspector.config",
    "RunnerConfig": "inspector.config",
    "CameraConfig": "inspector.config",
    "DashboardConfig": "inspector.config",
    "load_config": "inspector.config",
    # errors
    "InspectorError": "inspector.errors",
    "ImageLoadError": "inspector.errors",
    "BundleError": "inspector.errors",
    "ConfigError": "inspector.errors",
    "StoreError": "inspector.errors",
    "StoreUnavailable": "inspector.errors",
    "CameraError": "inspector.errors",
    "OutputError": "inspector.errors",
    "DatasetError": "inspector.errors",
    "RegistrationError": "inspector.errors",
    # store and feeds
    "Store": "inspector.store",
    "open_store": "inspector.store",
    "watch": "inspector.feeds.folder",
    "run_camera": "inspector.feeds.camera",
    "inspect_paths": "inspector.feeds.batch",
    # review and teaching
    "TeachConfig": "inspector.config",
    "learn": "inspector.review.teach",
    "rollback": "inspector.review.teach",
    "confirm_defect": "inspector.review.decisions",
    "dismiss_false_alarm": "inspector.review.decisions",
    "LearnedTolerance": "inspector.core.tolerance",
    "teaching_trial": "inspector.quality.teaching_trial",
    # quality tools and sample boards
    "evaluate": "inspector.quality.evaluate",
    "run_bench": "inspector.quality.bench",
    "generate_dataset": "inspector.synth.dataset",
    "run_demo": "inspector.demo",
}

__all__ = [
    "__version__",
    "Inspector",
    "InspectionResult",
    "Region",
    "Verdict",
    "PreprocessSpec",
    "preprocess",
    "ScoringSpec",
    "load_image",
    "decode_image",
    "recalibrate",
    "verify_bundle",
    "Settings",
    "TrainConfig",
    "InspectConfig",
    "RunnerConfig",
    "CameraConfig",
    "DashboardConfig",
    "load_config",
    "InspectorError",
    "ImageLoadError",
    "BundleError",
    "ConfigError",
    "StoreError",
    "StoreUnavailable",
    "CameraError",
    "OutputError",
    "DatasetError",
    "RegistrationError",
    "Store",
    "open_store",
    "watch",
    "run_camera",
    "inspect_paths",
    "TeachConfig",
    "learn",
    "rollback",
    "confirm_defect",
    "dismiss_false_alarm",
    "LearnedTolerance",
    "teaching_trial",
    "evaluate",
    "run_bench",
    "generate_dataset",
    "run_demo",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inspector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # type checkers see the names without the lazy loading
    from inspector.bundle.files import verify_bundle
    from inspector.config import (
        CameraConfig,
        DashboardConfig,
        InspectConfig,
        RunnerConfig,
        Settings,
        TeachConfig,
        TrainConfig,
        load_config,
    )
    from inspector.core.calibration import recalibrate
    from inspector.core.engine import Inspector
    from inspector.core.imageio import decode_image, load_image
    from inspector.core.preprocess import PreprocessSpec, preprocess
    from inspector.core.results import InspectionResult, Region
    from inspector.core.scoring import ScoringSpec
    from inspector.core.tolerance import LearnedTolerance
    from inspector.demo import run_demo
    from inspector.errors import (
        BundleError,
        CameraError,
        ConfigError,
        DatasetError,
        ImageLoadError,
        InspectorError,
        OutputError,
        RegistrationError,
        StoreError,
        StoreUnavailable,
    )
    from inspector.feeds.batch import inspect_paths
    from inspector.feeds.camera import run_camera
    from inspector.feeds.folder import watch
    from inspector.quality.bench import run_bench
    from inspector.quality.evaluate import evaluate
    from inspector.quality.teaching_trial import teaching_trial
    from inspector.review.decisions import confirm_defect, dismiss_false_alarm
    from inspector.review.teach import learn, rollback
    from inspector.store import Store, open_store
    from inspector.synth.dataset import generate_dataset
    from inspector.verdicts import Verdict
