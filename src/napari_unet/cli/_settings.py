"""From the ``segment`` command's parsed arguments to the core's `SegmentSettings`."""

from __future__ import annotations

from napari_unet.inference.settings import SegmentSettings


def segment_settings(args) -> SegmentSettings:
    """The :class:`~napari_unet.inference.settings.SegmentSettings` of ``napari-unet segment``."""
    return SegmentSettings(
        tile_shape=args.tile_size,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        min_size=args.min_size,
        object_size=args.object_size,
    )
