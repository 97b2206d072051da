"""The subcommands that turn one file into one file: ``weight-map`` and ``export-bioimageio``."""

from __future__ import annotations

import sys


def weight_map_command(args) -> int:
    """``napari-unet weight-map``: the eq. 2 weight map of one annotation, as a TIFF."""
    from napari_unet.io.checks import check_output_path
    from napari_unet.io.files import read_image, write_tiff
    from napari_unet.method.weight_map import separation_border_weight_map

    check_output_path(args.output, [args.annotation])
    labels = read_image(args.annotation)
    class_weights = None if args.class_weights == "none" else "balanced"
    weights = separation_border_weight_map(
        labels, args.w0, args.sigma, class_weights, dense=args.dense, n_classes=args.n_classes
    )
    write_tiff(args.output, weights)
    print(
        f"weight map {weights.shape}, range {weights.min():.3f}..{weights.max():.3f}"
        f" -> {args.output}"
    )
    return 0


def export_bioimageio_command(args) -> int:
    """``napari-unet export-bioimageio``: one model file as a bioimage.io package."""
    from napari_unet.io.checks import check_output_path
    from napari_unet.models.files import load_model, resolve_model_path

    check_output_path(args.output, [resolve_model_path(args.model)])
    try:
        from napari_unet.models.bioimageio import export_bioimageio

        written = export_bioimageio(
            load_model(args.model),
            args.output,
            name=args.name,
            authors=args.author,
            license=args.license,
        )
    except ImportError as error:  # the optional extra is missing: say how to install it
        print(f"napari-unet export-bioimageio: error: {error}", file=sys.stderr)
        return 2
    print(f"bioimage.io model package -> {written} (check it: bioimageio test {written})")
    return 0
