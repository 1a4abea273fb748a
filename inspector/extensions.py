"""The one hook through which the optional parts attach to the runtime.

The runtime (`inspector`) never imports `training` (torch) or `deploy` (Streamlit): a line PC runs
without them. Each optional part declares an entry point in the group below (pyproject.toml,
`[project.entry-points."board_inspector.extensions"]`) naming an object that implements one of the
protocols here; the CLI, the demo and the bench find it with `training()` / `dashboard()`. A part
that is not installed, or whose dependencies are missing, becomes one clear `InspectorError` that
names the extra to install.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.config import DashboardConfig, TrainConfig

GROUP = "board_inspector.extensions"
TRAINING = "training"
DASHBOARD = "dashboard"


class TrainingExtension(Protocol):
    """What `training/` offers the runtime (the `train` extra)."""

    def train_bundle(self, data: Path, out: Path, config: TrainConfig, resume: Path | None = None) -> dict[str, Any]:
        """Train on good boards and write a calibrated bundle; returns the training metrics."""
        ...

    def export_from_checkpoint(self, checkpoint: Path, out: Path, precision: str | None = None) -> Path:
        """Re-export a bundle from a training checkpoint."""
        ...

    def torch_reference(self, checkpoint: Path) -> Any:
        """The exported graph as a torch module in eval mode (the bench compares it with ONNX Runtime)."""
        ...


class DashboardExtension(Protocol):
    """What `deploy/` offers the runtime (the `dashboard` extra)."""

    def launch(self, config: DashboardConfig, data_dir: Path, *, demo: bool = False) -> None:
        """Run the dashboard in the foreground until it exits or is told to stop. Only the demo
        passes `demo=True`, which lets a users file with the published demo logins through."""
        ...

    def demo_users_file(self, folder: Path) -> Path:
        """Write a users file with the published demo logins into `folder` (`inspector demo` only)."""
        ...

    def manage_users(self, action: str, users_file: Path, name: str | None = None, *, role: str | None = None,
                     password_stdin: bool = False) -> str:
        """`inspector users add|passwd|remove|list`: change the users file; returns what to print.
        The password is asked on the terminal (twice) or read from stdin, never taken as an argument."""
        ...


def _load(name: str, extra: str) -> Any:
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise InspectorError(f"the {name} part of board-inspector is not installed; "
                             f"install the extra: pip install 'board-inspector[{extra}]'")
    try:
        return found[0].load()
    except ImportError as exc:
        raise InspectorError(f"the {name} part of board-inspector cannot be loaded ({exc}); "
                             f"install the extra: pip install 'board-inspector[{extra}]'") from exc


def training() -> TrainingExtension:
    return cast(TrainingExtension, _load(TRAINING, "train"))


def dashboard() -> DashboardExtension:
    return cast(DashboardExtension, _load(DASHBOARD, "dashboard"))


__all__ = ["GROUP", "DashboardExtension", "TrainingExtension", "dashboard", "training"]
