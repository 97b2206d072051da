"""Many image files segmented on a dask cluster, one task per file, resumable."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.distributed.cluster import DEFAULT_RETRIES, ClusterProgress, model_on_cluster
from napari_unet.io.files import FILE_ERRORS
from napari_unet.runtime.progress import run_to_completion


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file of :func:`segment_files`.

    Attributes
    ----------
    image : Path
        The input.
    outputs : tuple of Path
        Masks (and probabilities) written, or that were already complete.
    n_cells : int or None
        Cells found (``None`` when skipped or failed).
    seconds : float
        Time on the worker.
    skipped : bool
        The outputs were complete and valid from an earlier run.
    error : str or None
        Why the file failed.
    """

    image: Path
    outputs: tuple[Path, ...]
    n_cells: int | None = None
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None


@dataclass(frozen=True)
class FilesResult:
    """Result of :func:`segment_files`: one outcome per file, in input order."""

    outcomes: list[FileOutcome]
    seconds: float

    @property
    def failed(self) -> list[FileOutcome]:
        """Outcomes with an error."""
        return [o for o in self.outcomes if o.error is not None]

    @property
    def skipped(self) -> list[FileOutcome]:
        """Outcomes complete from an earlier run."""
        return [o for o in self.outcomes if o.skipped]


def _expected_labels_shape(image: Path) -> tuple[int, ...]:
    """Shape of the labels of an image file, from its header where it is a TIFF."""
    from napari_unet.io.files import read_image
    from napari_unet.method.images import image_layout

    if image.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(image) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
        header = np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))
        return image_layout(header).labels_shape
    return image_layout(read_image(image)).labels_shape


def outputs_complete(image: str | os.PathLike, outputs: Sequence[str | os.PathLike]) -> bool:
    """Whether every result of ``image`` exists, was written by napari-unet and fits it.

    Each result must carry napari-unet's TIFF ``Software`` tag and, read back, have the
    image's labels shape: integer masks, float32 probabilities. Results are written
    atomically, so such a file is whole.
    """
    import tifffile

    from napari_unet.io.files import written_by_this_package

    try:
        expected = _expected_labels_shape(Path(image))
        for index, out in enumerate(map(Path, outputs)):
            if not (out.is_file() and written_by_this_package(out)):
                return False
            with tifffile.TiffFile(out) as tif:
                series = tif.series[0]
                shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            if shape != expected or dtype.kind != ("f" if index else "u"):
                return False
    except (*FILE_ERRORS, KeyError, IndexError):
        return False
    return True


def _file_task(image: Path, outputs: tuple[Path, ...], model, options: dict) -> FileOutcome:
    """Worker side: segment one file and write its results, unless they are complete."""
    from napari_unet.inference.files import iter_segment_file
    from napari_unet.inference.settings import SegmentSettings

    started = time.perf_counter()
    if outputs_complete(image, outputs):
        return FileOutcome(image, outputs, skipped=True)
    try:
        generator = iter_segment_file(image, outputs, model, SegmentSettings(**options))
        result = run_to_completion(generator)
    except FILE_ERRORS as error:
        return FileOutcome(image, outputs, seconds=time.perf_counter() - started, error=str(error))
    return FileOutcome(image, outputs, result.n_cells, time.perf_counter() - started)


def iter_segment_files(
    client,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    model="default",
    probabilities: bool = False,
    retries: int = DEFAULT_RETRIES,
    **options,
) -> Generator[ClusterProgress, None, FilesResult]:
    """Segment many image files on a dask cluster, one task per file.

    Each task writes ``<stem>_masks.tif`` (and ``<stem>_probabilities.tif``) into
    ``output_dir`` atomically as soon as it finishes, so an interrupted batch loses at
    most the files in progress. A rerun skips every file whose results are complete and
    valid (:func:`outputs_complete`): it resumes. The workers must reach the inputs and
    ``output_dir`` (a shared file system).

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    inputs : sequence of str or os.PathLike
        Image files and folders (:func:`napari_unet.io.files.image_files`; TIFFs this package
        wrote are skipped in folders).
    output_dir : str or os.PathLike
        Folder for the results; created if needed.
    model : UNet, str or path
        The network, a model file or a shipped model name.
    probabilities : bool
        Also write the foreground probability.
    retries : int
        Reruns of a task that raised an unexpected error.
    **options
        Of :func:`~napari_unet.inference.segment.iter_segment` (``tile_shape``, ``device``,
        ``precision``, ``threshold``, ``min_size``, ``object_size``, …).

    Yields
    ------
    ClusterProgress
        After every file, with its :class:`FileOutcome` in ``outcome``.

    Returns
    -------
    FilesResult
        One outcome per file; failed files carry the error, the others went on.

    Raises
    ------
    FileNotFoundError
        If an input does not exist or a folder holds no image.
    ValueError
        If two inputs would write the same result, a result would overwrite an input,
        or the model cannot be loaded.
    """
    from distributed import as_completed

    from napari_unet.io.checks import check_output_path, check_unique_outputs
    from napari_unet.io.files import image_files, segmentation_outputs
    from napari_unet.models.files import as_model

    started = time.perf_counter()
    files = image_files(inputs, skip_written=True)
    outputs = [tuple(segmentation_outputs(f, output_dir, probabilities)) for f in files]
    every_output = [o for outs in outputs for o in outs]
    check_unique_outputs(every_output, inputs=files)
    check_output_path(every_output[0], files)
    net = as_model(model)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    model_future = model_on_cluster(client, net)
    futures = client.map(
        _file_task,
        files,
        outputs,
        model=model_future,
        options=options,
        retries=retries,
        pure=False,
    )
    index = {future.key: i for i, future in enumerate(futures)}
    outcomes: list[FileOutcome | None] = [None] * len(files)
    try:
        yield ClusterProgress("segment", 0, len(files), time.perf_counter() - started)
        for done, future in enumerate(as_completed(futures), start=1):
            outcome = future.result()
            outcomes[index[future.key]] = outcome
            yield ClusterProgress(
                "segment", done, len(files), time.perf_counter() - started, outcome
            )
    finally:
        client.cancel([*futures, model_future])
    return FilesResult(outcomes, time.perf_counter() - started)


def segment_files(client, inputs, output_dir, **options) -> FilesResult:
    """Segment image files on a dask cluster; see :func:`iter_segment_files`.

    Returns
    -------
    FilesResult
    """
    return run_to_completion(iter_segment_files(client, inputs, output_dir, **options))
