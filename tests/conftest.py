"""Shared fixtures: the sample field shipped in ``napari_unet/data`` as numpy arrays."""

from functools import cache
from importlib.resources import as_file, files

import numpy as np
import pytest
import tifffile


@cache
def _sample(name: str) -> np.ndarray:
    with as_file(files("napari_unet") / "data" / name) as path:
        array = tifffile.imread(path)
    array.flags.writeable = False  # shared between tests: copy before changing
    return array


@pytest.fixture
def sample_image() -> np.ndarray:
    """520x696 uint16 BBBC039 nuclei field (YX), read-only."""
    return _sample("nuclei.tif")


@pytest.fixture
def sample_masks() -> np.ndarray:
    """Dense instance mask of ``sample_image`` (0 = background, 1..156 nuclei), read-only."""
    return _sample("nuclei_masks.tif")


@pytest.fixture
def sample_annotation() -> np.ndarray:
    """Partial annotation of ``sample_image`` (0 = not annotated, 1 = background,
    2..32 = cells), read-only."""
    return _sample("nuclei_annotation.tif")
