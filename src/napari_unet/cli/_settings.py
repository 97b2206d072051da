"""From the ``segment`` command's parsed arguments to the core's `SegmentSettings`."""

from __future__ import annotations

import argparse

from napari_unet.inference.settings import SegmentSettings
from napari_unet.method.axes import AXES_CHOICES, DEFAULT_VOLUME_METHOD, VOLUME_METHODS


def segment_settings(args) -> SegmentSettings:
    """The :class:`~napari_unet.inference.settings.SegmentSettings` of ``napari-unet segment``."""
    return SegmentSettings(
        tile_shape=args.tile_size,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        min_size=args.min_size,
        object_size=args.object_size,
        axes=getattr(args, "axes", None),
        spacing=getattr(args, "spacing", None),
        volume_method=getattr(args, "volume_method", DEFAULT_VOLUME_METHOD),
    )


def _spacing(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"spacing must be numbers DZ,DY,DX (or DY,DX), got {value!r}"
        ) from None


def add_axes_options(parser: argparse.ArgumentParser, with_z: str) -> None:
    """``--axes`` and ``--spacing``, for ``segment`` and ``train``.

    ``with_z`` says what the subcommand does with a volume, in the help of ``--axes``.
    """
    parser.add_argument(
        "--axes",
        default=None,
        help=f"the images' axes: {', '.join(AXES_CHOICES)} (a trailing C: RGB). With Z, "
        f"{with_z}; T: time points one by one. Default: leading axes are a stack of planes",
    )
    parser.add_argument(
        "--spacing",
        type=_spacing,
        default=None,
        help="voxel size DZ,DY,DX (or pixel size DY,DX), any unit (default: from the ImageJ "
        "TIFF metadata, else isotropic)",
    )


def add_volume_options(parser: argparse.ArgumentParser) -> None:
    """``--axes``, ``--spacing`` and ``--volume-method`` of ``napari-unet segment``."""
    add_axes_options(
        parser, "each volume is segmented into 3D cells, one id per cell across planes"
    )
    parser.add_argument(
        "--volume-method",
        default=DEFAULT_VOLUME_METHOD,
        choices=VOLUME_METHODS,
        help="volumes: the 2D network on the XY planes, or on the XY, XZ and YZ planes "
        "(default: %(default)s)",
    )
