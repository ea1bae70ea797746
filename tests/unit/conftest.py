"""Shared paths for the unit tests."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTFS = REPO / "sim" / "images" / "unit" / "rootfs"


@pytest.fixture
def rootfs() -> Path:
    return ROOTFS
