"""A bundle's fixture files, read and verified: the reference board and how boards are aligned to it
(with the surround and light groups), the per-position model of good boards, the inspection area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.bundle.files import (
    ATLAS_FILE,
    GROUPS_FILE,
    REFERENCE_FILE,
    REGISTRATION_FILE,
    ROI_FILE,
    SURROUND_FILE,
    verify_bundle,
)
from inspector.core.atlas import Atlas
from inspector.core.groups import LightGroups
from inspector.core.registration import Registration, RegistrationSpec, Surround
from inspector.errors import BundleError, ConfigError


def load_fixture(bundle: Path, manifest: dict[str, Any]
                 ) -> tuple[Registration | None, Atlas | None, np.ndarray | None]:
    """Registration, per-position model and inspection area of a bundle (each None when it has none:
    bundles exported before they existed load and behave as before)."""
    listed = manifest["files"]
    registration = atlas = roi = None
    if REGISTRATION_FILE in listed:
        verify_bundle(bundle, files=(REGISTRATION_FILE, REFERENCE_FILE))
        try:
            spec = RegistrationSpec.from_json((bundle / REGISTRATION_FILE).read_text())
        except ConfigError as exc:
            raise BundleError(f"{bundle / REGISTRATION_FILE}: {exc}") from exc
        reference = cv2.imread(str(bundle / REFERENCE_FILE), cv2.IMREAD_UNCHANGED)
        if reference is None:
            raise BundleError(f"{bundle / REFERENCE_FILE}: unreadable reference board")
        try:
            surround = groups = None
            if SURROUND_FILE in listed:
                verify_bundle(bundle, files=(SURROUND_FILE,))
                surround = Surround.load(bundle / SURROUND_FILE)
            if GROUPS_FILE in listed:
                verify_bundle(bundle, files=(GROUPS_FILE,))
                groups = LightGroups.load(bundle / GROUPS_FILE)
            registration = Registration(spec, reference, surround, groups)
        except ConfigError as exc:
            raise BundleError(f"{bundle}: {exc}") from exc
    if ATLAS_FILE in listed:
        verify_bundle(bundle, files=(ATLAS_FILE,))
        atlas = Atlas.load(bundle / ATLAS_FILE)
    if ROI_FILE in listed:
        verify_bundle(bundle, files=(ROI_FILE,))
        roi = cv2.imread(str(bundle / ROI_FILE), cv2.IMREAD_GRAYSCALE)
        if roi is None:
            raise BundleError(f"{bundle / ROI_FILE}: unreadable inspection area")
    return registration, atlas, roi


def area_on_board(roi: np.ndarray | None, registration: Registration | None, warp: np.ndarray | None,
                  input_shape: tuple[int, int]) -> np.ndarray | None:
    """The inspection area on the board as photographed (for overlays): the bundle's area, less the
    surround the camera sees (fixture parts, clamps, glare: never judged); None for the whole image."""
    surround = None
    if warp is not None and registration is not None and registration.surround is not None:
        surround = registration.surround.camera
    if roi is None and surround is None:
        return None
    height, width = input_shape
    if roi is None:
        area = np.full((height, width), 255, np.uint8)
    else:
        area = roi if roi.shape == (height, width) else cv2.resize(roi, (width, height),
                                                                   interpolation=cv2.INTER_NEAREST)
        if warp is not None:
            area = cv2.warpAffine(area, warp.astype(np.float32), (width, height), flags=cv2.INTER_NEAREST)
    if surround is not None:  # already where the camera sees it
        if surround.shape != (height, width):
            surround = cv2.resize(surround, (width, height), interpolation=cv2.INTER_NEAREST)
        area = cv2.bitwise_and(area, cv2.bitwise_not(surround))
    return area
