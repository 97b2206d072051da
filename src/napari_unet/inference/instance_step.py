"""`InstanceSettings`: how a model's probabilities become cells, in a plane or a volume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_unet.method.annotation import DEFAULT_GAP
from napari_unet.method.instances import (
    boundary_watershed,
    components_3d,
    min_size_for,
    min_volume_for,
    probabilities_to_labels,
)
from napari_unet.method.network import UNet
from napari_unet.method.object_size import check_object_size
from napari_unet.models.metadata import (
    DEFAULT_MIN_SIZE,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
)


@dataclass(frozen=True)
class InstanceSettings:
    """How a model's probabilities become cells: its instance step and thresholds.

    Attributes
    ----------
    three_class : bool
        Seeded watershed (:func:`~napari_unet.method.instances.boundary_watershed`) for a
        three-class model; threshold and connected components
        (:func:`~napari_unet.method.instances.probabilities_to_labels`) for two classes.
    threshold : float
        Foreground probability threshold.
    min_size : int
        Smallest cell, pixels.
    seed_threshold : float
        Interior probability that seeds a cell (three classes).
    grow : int
        Pixels a two-class model's cells are grown back over separation gaps (the
        whole gap: twice the model's ``gap``).
    smoothing : float
        Gaussian smoothing (pixels) of the probabilities before the watershed
        (three classes); 0: none.
    fill_holes : bool
        Fill holes inside cells (three classes).
    """

    three_class: bool
    threshold: float
    min_size: int
    seed_threshold: float
    grow: int
    smoothing: float = 0.0
    fill_holes: bool = False

    @classmethod
    def for_model(
        cls,
        model: UNet,
        threshold: float | None = None,
        min_size: int | None = None,
        object_size: float | None = None,
    ) -> InstanceSettings:
        """The settings stored in ``model``, overridden by the arguments given.

        Raises
        ------
        ValueError
            If ``object_size`` is not a finite number >= 1.
        """
        metadata = model.metadata or {}
        post = metadata.get("postprocessing", {})
        threshold = float(
            post.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
        )
        if min_size is None:
            if object_size is not None:
                min_size = min_size_for(check_object_size(object_size))
            else:
                min_size = int(post.get("min_size", DEFAULT_MIN_SIZE))
        # Cells lost ``gap`` px per side to the separation border: grow back across 2 * gap.
        grow = 2 * int(metadata.get("gap", DEFAULT_GAP))
        seed_threshold = float(post.get("seed_threshold", DEFAULT_SEED_THRESHOLD))
        return cls(
            model.config.n_classes == 3,
            threshold,
            int(min_size),
            seed_threshold,
            grow,
            float(post.get("smoothing", 0.0)),
            bool(post.get("fill_holes", False)),
        )

    def describe(self) -> str:
        """These settings in one line of plain words."""
        if not self.three_class:
            return f"foreground > {self.threshold:g} · smallest cell {self.min_size} px"
        text = (
            f"foreground > {self.threshold:g} · seeds > {self.seed_threshold:g} · "
            f"smallest cell {self.min_size} px"
        )
        if self.smoothing:
            text += f" · outlines smoothed {self.smoothing:g} px"
        if self.fill_holes:
            text += " · holes filled"
        return text

    def postprocessing(self) -> dict:
        """These settings as a model's ``postprocessing`` metadata."""
        post = {"threshold": self.threshold, "min_size": self.min_size}
        if self.three_class:
            post.update(
                seed_threshold=self.seed_threshold,
                smoothing=self.smoothing,
                fill_holes=self.fill_holes,
            )
        return post

    @property
    def output_classes(self) -> tuple[int, ...]:
        """Classes the instance step needs (background and interior, or the cell class)."""
        return (0, 1) if self.three_class else (1,)

    def labels(
        self, predicted: np.ndarray, spacing: tuple[float, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cells and foreground probability of one plane or one volume.

        Parameters
        ----------
        predicted : np.ndarray
            float32 ``(len(output_classes), Y, X)`` or ``(len(output_classes), Z, Y, X)``
            probabilities of :attr:`output_classes`.
        spacing : tuple of float, optional
            Voxel size ``(dz, dy, dx)`` of a volume (any unit); default isotropic. In a
            volume the watershed and the smoothing are 3D and anisotropy-aware, and
            ``min_size`` (pixels of a plane) becomes a volume
            (:func:`~napari_unet.method.instances.min_volume_for`).

        Returns
        -------
        labels, foreground : np.ndarray
            int32 labels of the plane or volume (0 = background; in a volume one id per
            cell across its planes) and float32 foreground probability.
        """
        volume = predicted.ndim == 4
        min_size = self.min_size
        if volume:
            min_size = min_volume_for(self.min_size, spacing, predicted.shape[1])
        if self.three_class:
            labels = boundary_watershed(
                predicted[0],
                predicted[1],
                self.threshold,
                min_size,
                self.seed_threshold,
                smoothing=self.smoothing,
                fill_holes=self.fill_holes,
                spacing=spacing if volume else None,
            )
            return labels, 1.0 - predicted[0]
        foreground = predicted[0]
        if volume:  # no separation gap to grow back over across planes: 3D components
            return components_3d(foreground, self.threshold, min_size), foreground
        return probabilities_to_labels(
            foreground, self.threshold, self.min_size, self.grow
        ), foreground
