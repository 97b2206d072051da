"""`SegmentSettings`: the segmentation settings every route (memory, zarr, cluster) takes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from napari_unet.method.axes import DEFAULT_VOLUME_METHOD


@dataclass(frozen=True)
class SegmentSettings:
    """How to segment, whatever the route; defined once for the API, the CLI and the widgets.

    The first eight fields are shared by every route (:func:`~napari_unet.inference.segment.
    iter_segment`, :func:`~napari_unet.inference.to_zarr.iter_segment_to_zarr` and
    :func:`napari_unet.distributed.iter_segment_zarr`); ``rgb`` and
    ``invert_bright_background`` describe the input and matter only in memory (the block
    routes take one grayscale plane or volume); ``axes``, ``spacing`` and
    ``volume_method`` go to every route (:meth:`blocks`).

    Attributes
    ----------
    tile_shape : (int, int), optional
        Spatial input tile shape in pixels; automatic from free memory when ``None``.
    batch_size : int, optional
        Tiles per forward pass; automatic when ``None``.
    device, precision : str
        As :data:`napari_unet.runtime.devices.DEVICE_CHOICES` and ``PRECISION_CHOICES``.
    threshold, min_size, object_size : optional
        The instance step; ``None`` = the model's (see
        :meth:`~napari_unet.inference.segment.InstanceSettings.for_model`).
    normalization : (float, float), optional
        ``(low, high)`` intensities mapped to 0 and 1; default: the model's percentiles.
    rgb : bool, optional
        Whether the last axis is RGB; guessed when ``None``. In memory only.
    invert_bright_background : bool
        RGB only: invert a bright background. In memory only.
    axes : str, optional
        The image's axes (:data:`napari_unet.method.axes.AXES_CHOICES`); with ``Z``,
        volumes are segmented into 3D cells. ``None``: a stack of planes (block routes:
        one plane, or the OME-Zarr image's axes). Block routes take ``"YX"`` or ``"ZYX"``.
    spacing : tuple of float, optional
        Voxel size ``(dz, dy, dx)`` (or pixel size ``(dy, dx)``), any unit.
    volume_method : str
        :data:`napari_unet.method.axes.VOLUME_METHODS`; volumes only.
    """

    tile_shape: tuple[int, int] | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    threshold: float | None = None
    min_size: int | None = None
    object_size: float | None = None
    normalization: tuple[float, float] | None = None
    rgb: bool | None = None
    invert_bright_background: bool = True
    axes: str | None = None
    spacing: tuple[float, ...] | None = None
    volume_method: str = DEFAULT_VOLUME_METHOD

    def shared(self) -> dict:
        """The eight keyword arguments every route takes."""
        return {f.name: getattr(self, f.name) for f in fields(self)[:8]}

    def blocks(self) -> dict:
        """The keyword arguments of the block routes: :meth:`shared` and the volume's three."""
        return {**self.shared(), "axes": self.axes, "spacing": self.spacing,
                "volume_method": self.volume_method}  # fmt: skip

    def in_memory(self) -> dict:
        """The keyword arguments of :func:`~napari_unet.inference.segment.iter_segment`."""
        return asdict(self)
