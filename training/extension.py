"""The training part's entry point (`board_inspector.extensions` = training): see inspector/extensions.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.config import TrainConfig


class Training:
    """Training, export and the torch reference model, offered to the runtime's CLI, demo and bench."""

    def train_bundle(self, data: Path, out: Path, config: TrainConfig, resume: Path | None = None) -> dict[str, Any]:
        from training.train import train_bundle

        return train_bundle(data, out, config, resume=resume)

    def export_from_checkpoint(self, checkpoint: Path, out: Path, precision: str | None = None) -> Path:
        from training.export import export_from_checkpoint

        return export_from_checkpoint(checkpoint, out, precision=precision)

    def torch_reference(self, checkpoint: Path) -> Any:
        from training.checkpoint import load_checkpoint
        from training.export import build_exported_model

        return build_exported_model(load_checkpoint(checkpoint))


EXTENSION = Training()
