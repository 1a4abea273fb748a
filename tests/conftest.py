"""Shared fixtures. Every image a test needs is generated here; nothing is downloaded."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("BOARD_INSPECTOR_TEST_PG", "")
REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"


def require(condition: bool, reason: str) -> None:
    """Skip locally when an external piece (browser, PostgreSQL) is missing; fail under CI,
    where .ci/run installs it, so a missing install step can never pass silently."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A localhost TCP port nothing listens on now (the OS picks it), for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A folder runner's empty inbox and its data folder (not made: the runner makes it)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return inbox, tmp_path / "data"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MVTec-layout set of synthetic boards (train/good, test/good, test/<type>, masks)."""
    from inspector.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("samples")
    generate_dataset(root, good=16, defective=8, test_good=4, seed=7, size=(160, 160))
    return root


@pytest.fixture(scope="session")
def tiny_bundle(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small autoencoder bundle trained for seconds on `sample_root` (shared by many tests)."""
    from inspector.config import RegistrationSettings, ScheduleSettings, TrainConfig
    from training.train import train_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    # The engine's generic behaviour (batches of mixed sizes, tiles, CLI, runner): no registration,
    # which would refuse boards of another size than its reference (fixtured_bundle has it).
    config = TrainConfig(
        width=8, depth=3, latent_channels=16, crop_size=64, holdout_fraction=0.25, seed=3, threads=1,
        schedule=ScheduleSettings(epochs=6, max_minutes=1.5, batch_size=8, crops_per_image=2, epoch_crops=0,
                                  hard_crop_start=2, hard_crop_every=2),  # hard crops (unregistered boards) within 6 epochs
        registration=RegistrationSettings(mode="off"),
    )
    train_bundle(sample_root, out, config)
    return out


@pytest.fixture(scope="session")
def fixtured_bundle(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the defaults for one fixtured design: registration, light normalisation,
    board-minus-reference input and the per-position model (chosen by training from the boards)."""
    from inspector.config import ScheduleSettings, TrainConfig
    from training.train import train_bundle

    out = tmp_path_factory.mktemp("fixtured") / "tiny"
    config = TrainConfig(
        width=8, depth=3, latent_channels=16, crop_size=64, holdout_fraction=0.25, seed=3, threads=1,
        schedule=ScheduleSettings(epochs=6, max_minutes=1.5, batch_size=8, crops_per_image=2, epoch_crops=0),
    )
    train_bundle(sample_root, out, config)
    return out


@pytest.fixture(scope="session")
def float_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model re-exported in float32 (the default bundle is INT8)."""
    from inspector.bundle.files import CHECKPOINT_FILE
    from training.export import export_from_checkpoint

    return export_from_checkpoint(tiny_bundle / CHECKPOINT_FILE, tmp_path_factory.mktemp("f32") / "bundle",
                                  precision="float32")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema per test, selected through the connection's search_path."""
    require(bool(PG_URL), "BOARD_INSPECTOR_TEST_PG is not set (PostgreSQL store tests)")
    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options=-csearch_path%3D{schema_name}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
    admin.dispose()
