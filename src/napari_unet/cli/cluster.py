"""The command line on a dask cluster: ``segment`` and ``train`` with ``--dask-scheduler``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _block_size(value: str) -> int | tuple[int, ...]:
    try:
        parts = tuple(int(v) for v in value.lower().replace("x", ",").split(",") if v)
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2, 3) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"block size must be N, YxX or ZxYxX, got {value!r}")
    return parts[0] if len(parts) == 1 else parts


def add_cluster_options(parser: argparse.ArgumentParser, *, blocks: bool = False) -> None:
    """Add ``--dask-scheduler`` (and for ``segment`` ``--block-size``) to a subcommand."""
    parser.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on a dask cluster: a scheduler address (tcp://host:8786), or local:N for N "
        "worker processes on this machine"
        + ("; zarr and OME-Zarr inputs are segmented block by block" if blocks else ""),
    )
    if blocks:
        from napari_unet.inference.blocks import DEFAULT_BLOCK_SIDE
        from napari_unet.inference.volume_blocks import DEFAULT_VOLUME_BLOCK

        parser.add_argument(
            "--block-size",
            type=_block_size,
            default=None,
            help="block core of zarr and OME-Zarr inputs, segmented block by block: N, YxX "
            f"or ZxYxX pixels (default: {DEFAULT_BLOCK_SIDE} square for a plane, "
            f"{'x'.join(map(str, DEFAULT_VOLUME_BLOCK))} for a volume)",
        )


def _check_installed() -> None:
    from napari_unet.distributed.cluster import require_distributed

    try:
        require_distributed("--dask-scheduler")
    except ImportError as error:
        raise ValueError(str(error)) from error


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr array or group (an OME-Zarr image) on disk."""
    path = Path(path)
    return path.is_dir() and any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def segment_on_cluster(args) -> int:
    """``napari-unet segment --dask-scheduler``: files one task each, zarr images by blocks.

    Image files get ``<name>_masks.tif`` as without a cluster, written as they finish;
    results that are complete from an earlier run are kept (the run resumes). A zarr or
    OME-Zarr image gets ``<name>_masks.zarr`` (:func:`segment_stores`).
    """
    _check_installed()

    from napari_unet.cli._settings import segment_settings
    from napari_unet.distributed import connect, iter_segment_files

    stores = [Path(p) for p in args.inputs if is_zarr(p)]
    others = [p for p in args.inputs if not is_zarr(p)]
    settings = segment_settings(args)
    segment_stores(stores, args, args.dask_scheduler)
    failed = 0
    if others:
        with connect(args.dask_scheduler) as client:
            generator = iter_segment_files(
                client, others, args.output, probabilities=args.probabilities,
                model=args.model, **settings.blocks(),
            )  # fmt: skip
            result = _with_bar(generator, "images", "image", report=_report_file)
        failed = len(result.failed)
        if failed:
            print(
                f"napari-unet segment: {failed} of {len(result.outcomes)} files failed",
                file=sys.stderr,
            )
    return 1 if failed else 0


def segment_stores(stores: list[Path], args, scheduler: str | None = None) -> None:
    """Zarr and OME-Zarr images of ``napari-unet segment``, block by block, by the route.

    Each gets ``<name>_masks.zarr`` in the output folder, an int32 zarr array (3D labels
    for a volume: ``--axes ZYX``, or an OME-Zarr image whose axes say so); in this
    process, or on the cluster at ``scheduler``.
    """
    from tqdm import tqdm

    from napari_unet.cli._settings import segment_settings
    from napari_unet.route.segment import iter_segment_routed

    if stores and args.probabilities:
        raise ValueError("--probabilities is not available for zarr inputs")
    settings = segment_settings(args)
    for store in stores:
        output = args.output / f"{store.name.removesuffix('.zarr')}_masks.zarr"
        generator = iter_segment_routed(
            store, args.model, settings, output=output, scheduler=scheduler,
            block_shape=args.block_size,
        )  # fmt: skip
        result = _with_fraction_bar(generator, store.name)
        tqdm.write(f"{store.name}: {result.n_cells} cells -> {output} ({result.seconds:.1f} s)")


def _report_file(outcome) -> None:
    from tqdm import tqdm

    name = outcome.image.name
    if outcome.error is not None:
        print(f"napari-unet segment: error: {outcome.image}: {outcome.error}", file=sys.stderr)
    elif outcome.skipped:
        tqdm.write(f"{name}: complete from an earlier run, kept")
    else:
        tqdm.write(f"{name}: {outcome.n_cells} cells -> {outcome.outputs[0]}")


def _with_fraction_bar(generator, description: str):
    """Run a :func:`~napari_unet.route.segment.iter_segment_routed` job with a tqdm bar."""
    from tqdm import tqdm

    from napari_unet.runtime.progress import run_to_completion

    with tqdm(total=1.0, desc=description, bar_format="{l_bar}{bar}| {elapsed}") as bar:

        def update(progress, bar=bar):
            bar.set_postfix_str(progress.message, refresh=False)
            bar.update(progress.fraction - bar.n)

        return run_to_completion(generator, update)


def _with_bar(generator, description: str, unit: str, report=None):
    """Run a cluster job generator with a tqdm bar per stage; return its result."""
    from tqdm import tqdm

    bar, stage = None, None
    try:
        while True:
            try:
                progress = next(generator)
            except StopIteration as done:
                return done.value
            if progress.stage != stage:
                if bar is not None:
                    bar.close()
                stage = progress.stage
                bar = tqdm(total=progress.total, desc=f"{description} ({stage})", unit=unit)
            bar.update(progress.done - bar.n)
            if report is not None and progress.outcome is not None:  # a file finished
                report(progress.outcome)
    finally:
        if bar is not None:
            bar.close()
        generator.close()


def train_on_cluster(address: str):
    """``train`` for ``napari-unet train``: on a dask worker when ``address`` is given."""
    if address is None:
        from napari_unet.training.loop import train

        return train
    from functools import partial

    from napari_unet.distributed.training import train_on_scheduler

    _check_installed()
    return partial(train_on_scheduler, address)
