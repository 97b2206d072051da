"""Command line: ``napari-unet segment | train | weight-map | export-bioimageio``."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from napari_unet.cli._settings import add_volume_options, segment_settings
from napari_unet.cli.cluster import add_cluster_options
from napari_unet.cli.one_file import export_bioimageio_command, weight_map_command
from napari_unet.cli.outcomes import (
    DEBUG_HELP,
    EXIT_INTERRUPTED,
    REPORTED_ERRORS,
    interrupt_stops,
    run_reporting,
)
from napari_unet.cli.train_volumes import add_volume_arguments, training_spacings
from napari_unet.method.annotation import DEFAULT_N_CLASSES, TARGET_CLASSES
from napari_unet.runtime.devices import DEVICE_CHOICES, PRECISION_CHOICES

_DEFAULT = "default: %(default)s"


def _tile(value: str) -> tuple[int, int]:
    parts = [int(v) for v in value.lower().replace("x", ",").split(",") if v]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"tile size must be N or HxW, got {value!r}")
    return parts[0], parts[1]


def _segment_outputs(path: Path, args) -> list[Path]:
    from napari_unet.io.files import segmentation_outputs

    return segmentation_outputs(path, args.output, args.probabilities)


def _segment(args) -> int:
    from napari_unet.cli.cluster import is_zarr, segment_on_cluster, segment_stores
    from napari_unet.io.checks import (
        check_output_path,
        check_unique_outputs,
        refuse_foreign_output,
    )
    from napari_unet.io.files import image_files
    from napari_unet.method.axes import check_spacing, spatial_axes
    from napari_unet.models.files import load_model

    check_spacing(args.spacing, spatial_axes(args.axes and args.axes.upper()))
    if args.dask_scheduler:  # on a cluster (also zarr images, block by block)
        return segment_on_cluster(args)
    stores = [Path(p) for p in args.inputs if is_zarr(p)]  # block by block, in this process
    others = [p for p in args.inputs if not is_zarr(p)]
    # every check on settings, names and folders comes before the first image is read
    files = image_files(others, skip_written=True) if others else []
    outputs = {path: _segment_outputs(path, args) for path in files}
    every_output = [out for outs in outputs.values() for out in outs]
    if files:
        check_unique_outputs(every_output, inputs=files)
        check_output_path(every_output[0], files)
    for out in every_output:
        refuse_foreign_output(out)
    model = load_model(args.model)
    args.output.mkdir(parents=True, exist_ok=True)
    segment_stores(stores, args)
    failed, done = 0, 0
    for path in files:
        try:
            _segment_file(path, model, args, outputs[path])
        except REPORTED_ERRORS as error:
            failed += 1
            print(f"napari-unet segment: error: {path}: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print(
                f"napari-unet segment: interrupted: {done - failed} of {len(files)} images "
                f"segmented, their results written to {args.output}; {path.name} and the "
                "images after it were not written",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        done += 1
    if failed:
        print(f"napari-unet segment: {failed} of {len(files)} files failed", file=sys.stderr)
        return 1
    return 0


def _segment_file(path: Path, model, args, outputs: list[Path]) -> None:
    from tqdm import tqdm

    from napari_unet.inference.files import iter_segment_file
    from napari_unet.runtime.progress import run_to_completion

    with tqdm(total=1.0, desc=path.name, unit="image", bar_format="{l_bar}{bar}| {elapsed}") as bar:

        def update(p, bar=bar):
            bar.set_postfix_str(f"{p.device} {p.precision}", refresh=False)
            bar.update(p.fraction - bar.n)

        result = run_to_completion(
            iter_segment_file(path, outputs, model, segment_settings(args)), update
        )
    tqdm.write(
        f"{path.name}: {result.n_cells} cells -> {result.outputs[0]} "
        f"({result.seconds:.2f} s on {result.device}, {result.precision})"
    )


def _train(args) -> int:
    from napari_unet.io.checks import check_output_path, pair_by_name
    from napari_unet.io.files import image_files
    from napari_unet.method.network import UNet
    from napari_unet.models.files import load_model, model_file_bytes
    from napari_unet.training.loop import SCRATCH_CONFIG, TrainingConfig, train

    pairs = pair_by_name(image_files(args.images), image_files(args.annotations))
    images, annotations = [image for image, _ in pairs], [ann for _, ann in pairs]
    model = None if args.start_from == "scratch" else load_model(args.start_from)
    # before the first iteration: the model file can be written, and has room
    size = model_file_bytes(model if model is not None else UNet(config=SCRATCH_CONFIG))
    check_output_path(args.output, images + annotations, min_free_bytes=size)
    config = TrainingConfig(
        n_iterations=args.iterations,
        max_seconds=None if args.minutes is None else args.minutes * 60,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        augment=not args.no_augmentation,
        w0=args.w0,
        sigma=args.sigma,
        n_classes=args.n_classes,
        object_size=args.object_size,
    )
    if args.dask_scheduler:  # the same generator, run on a dask worker
        from napari_unet.cli.cluster import train_on_cluster

        train = train_on_cluster(args.dask_scheduler)
    stop = threading.Event()
    with interrupt_stops(stop, "train"):
        return _run_training(train, images, annotations, model, config, args, stop)


def _run_training(train, images, annotations, model, config, args, stop) -> int:
    """Train, then save the best model; Ctrl-C once stops early and still saves."""
    from tqdm import tqdm

    from napari_unet.io.files import read_image
    from napari_unet.models.files import save_model_or_keep
    from napari_unet.runtime.progress import run_to_completion

    generator = train(
        [read_image(p) for p in images],
        [read_image(p) for p in annotations],
        model=model,
        config=config,
        device=args.device,
        dense=args.dense,
        seed=args.seed,
        stop=stop,
        axes=args.axes and [args.axes.upper()] * len(images),
        spacing=training_spacings(images, args.axes, args.spacing),
    )
    with tqdm(total=1.0, desc="training", bar_format="{l_bar}{bar}| {elapsed}{postfix}") as bar:

        def update(p):
            bar.set_postfix_str(f"iteration {p.iteration}, loss {p.loss:.4f}", refresh=False)
            bar.update(p.fraction - bar.n)

        result = run_to_completion(generator, update)
    if result.stopped and not result.history:
        print(
            "napari-unet train: interrupted before the first iteration: nothing written",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    written, error = save_model_or_keep(result.model, args.output)
    if error is not None:
        print(
            f"napari-unet train: error: cannot write {args.output} ({error}); the model "
            f"was saved to {written} instead",
            file=sys.stderr,
        )
        return 1
    if result.painted is not None:  # the never-worse rule's verdict
        tqdm.write(result.painted.message)
    if result.stopped:
        tqdm.write(
            f"napari-unet train: interrupted after {len(result.history)} iterations; the best "
            f"model so far (iteration {result.best_iteration}) was written to {written}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    tqdm.write(f"best iteration {result.best_iteration}; model written to {written}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-unet`` argument parser; its defaults are those of the core."""
    from napari_unet.training.loop import TrainingConfig
    from napari_unet.training.settings_help import SETTINGS_HELP as HELP

    training_defaults = TrainingConfig()
    parser = argparse.ArgumentParser(
        prog="napari-unet",
        description="U-Net (Ronneberger et al. 2015) cell segmentation: "
        "segment, train, weight maps.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment",
        help="segment images; writes <name>_masks.tif label images",
        description="Segment images into <name>_masks.tif label images. Result names must "
        "be unique and no result may overwrite an input or a file napari-unet did not "
        "write; TIFF files napari-unet wrote are skipped in input folders.",
    )
    seg.add_argument("inputs", nargs="+", help="image files or folders of images")
    seg.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    seg.add_argument(
        "-m",
        "--model",
        default="default",
        help="shipped model name, or a model file (./default for a file named 'default'); "
        "default: %(default)s",
    )
    seg.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    seg.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    seg.add_argument(
        "--tile-size",
        type=_tile,
        default=None,
        help="input tile, N or HxW pixels (default: automatic)",
    )
    seg.add_argument(
        "--threshold", type=float, default=None, help="foreground probability threshold"
    )
    seg.add_argument("--min-size", type=int, default=None, help="smallest cell in pixels")
    seg.add_argument(
        "--object-size",
        type=float,
        default=None,
        help="typical cell diameter in pixels (default: the model's)",
    )
    add_volume_options(seg)
    seg.add_argument(
        "--probabilities", action="store_true", help="also write <name>_probabilities.tif"
    )
    add_cluster_options(seg, blocks=True)
    seg.set_defaults(func=_segment)

    tr = sub.add_parser("train", help="train or fine-tune a model on image/annotation pairs")
    tr.add_argument(
        "--images",
        nargs="+",
        required=True,
        help="image files or folders; paired with annotations by name "
        "(cells.tif with cells.tif or cells_masks.tif)",
    )
    tr.add_argument(
        "--annotations",
        nargs="+",
        required=True,
        help="annotation files or folders, one per image: 0 not annotated, 1 background, 2.. cells",
    )
    tr.add_argument(
        "-o", "--output", type=Path, required=True, help="model file to write (.safetensors)"
    )
    tr.add_argument(
        "--from",
        dest="start_from",
        default="default",
        help="'default' (fine-tune the shipped model), a model file, or 'scratch'",
    )
    tr.add_argument("--dense", action="store_true", help=HELP["dense"])
    add_volume_arguments(tr)  # --axes, --spacing: volumes from their painted planes
    tr.add_argument(
        "--minutes", type=float, default=training_defaults.max_seconds / 60, help=HELP["minutes"]
    )
    tr.add_argument(
        "--iterations",
        type=int,
        default=training_defaults.n_iterations,
        help=HELP["n_iterations"] + " Default: no cap, --minutes ends the run.",
    )
    for name, kind in (("learning_rate", float), ("batch_size", int)):
        option = "--" + name.replace("_", "-")
        tr.add_argument(
            option, type=kind, default=getattr(training_defaults, name), help=HELP[name]
        )
    tr.add_argument(
        "--object-size",
        type=float,
        default=None,
        help=HELP["object_size"] + " Default: measured on the annotated cells.",
    )
    tr.add_argument(
        "--n-classes",
        type=int,
        choices=sorted(TARGET_CLASSES),
        default=None,
        help="2: background/cell (the paper); 3: adds a cell-boundary class "
        "(default: the starting model's; 3 from scratch)",
    )
    tr.add_argument(
        "--no-augmentation",
        action="store_true",
        help="Turn the augmentation off. " + HELP["augment"],
    )
    tr.add_argument("--w0", type=float, default=training_defaults.w0, help=HELP["w0"])
    tr.add_argument("--sigma", type=float, default=training_defaults.sigma, help=HELP["sigma"])
    tr.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help=HELP["device"])
    tr.add_argument("--seed", type=int, default=None, help=HELP["seed"] + " Default: random.")
    add_cluster_options(tr)
    tr.set_defaults(func=_train)

    wm = sub.add_parser(
        "weight-map", help="write the separation-border weight map of an annotation"
    )
    wm.add_argument("annotation", type=Path, help="annotation (label) image")
    wm.add_argument("-o", "--output", type=Path, required=True, help="float32 TIFF to write")
    wm.add_argument("--w0", type=float, default=training_defaults.w0, help=_DEFAULT)
    wm.add_argument("--sigma", type=float, default=training_defaults.sigma, help=_DEFAULT)
    wm.add_argument(
        "--class-weights",
        choices=("none", "balanced"),
        default="balanced" if training_defaults.class_weights == "balanced" else "none",
        help="w_c of eq. 2 (default: %(default)s, as in training)",
    )
    wm.add_argument(
        "--n-classes",
        type=int,
        choices=sorted(TARGET_CLASSES),
        default=DEFAULT_N_CLASSES,
        help="target the map is for (default: %(default)s, as the default model)",
    )
    wm.add_argument("--dense", action="store_true", help="annotation is dense: 0 = background")
    wm.set_defaults(func=weight_map_command)

    from napari_unet.models.bioimageio import DEFAULT_LICENSE, INSTALL_HINT

    bx = sub.add_parser(
        "export-bioimageio",
        help="write a model as a bioimage.io model package (zip)",
        description="Write a model as a bioimage.io model package (format 0.5): for ilastik, "
        f"deepImageJ/Fiji, QuPath and bioimageio.core. Needs the bioimageio extra: "
        f"{INSTALL_HINT}.",
    )
    bx.add_argument("model", help="shipped model name (default) or a model file")
    bx.add_argument("-o", "--output", type=Path, required=True, help="zip file to write")
    bx.add_argument("--name", default=None, help="package name (default: from the model)")
    bx.add_argument(
        "--author",
        action="append",
        default=None,
        help="who trained the model; repeat for several (default: the project for the "
        "shipped model, else a placeholder)",
    )
    bx.add_argument("--license", default=DEFAULT_LICENSE, help="SPDX licence id; " + _DEFAULT)
    bx.set_defaults(func=export_bioimageio_command)
    for subcommand in (seg, tr, wm, bx):  # also after the subcommand; SUPPRESS keeps the main's
        subcommand.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script.

    Returns
    -------
    int
        0 on success; 1 when some files of a batch (or the save to the requested
        place) failed, each reported on one line; 2 when the run failed as a whole, 130
        after Ctrl-C (one line on standard error; ``--debug`` shows a traceback).
    """
    return run_reporting(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
