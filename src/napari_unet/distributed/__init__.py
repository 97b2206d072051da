"""Scale out on dask.distributed: huge images, many files, and training on a remote worker.

Every function takes a :class:`distributed.Client` (``Client("tcp://host:8786")`` for a
running cluster, e.g. one started by ``dask-jobqueue`` on SLURM; :func:`connect` for an
address or ``"local:N"``, a :class:`distributed.LocalCluster` of N worker processes).

- :func:`segment_zarr` (:func:`iter_segment_zarr`): one zarr or OME-Zarr image, block by
  block, into zarr labels equal to :func:`napari_unet.segment` on the whole image.
- :func:`segment_files` (:func:`iter_segment_files`): one task per image file, results
  written as they finish; a rerun resumes.
- :func:`train_remote` (:func:`iter_train_remote`): :func:`napari_unet.training.loop.train` on
  a worker, its progress streamed back, with Stop, and the best model returned.

The model goes to the cluster once, as a task any worker can recompute; tasks lost to a
dying worker are rerun by dask. Needs the ``[distributed]`` extra.
"""

from napari_unet.distributed.cluster import (
    DEFAULT_RETRIES,
    ClusterProgress,
    connect,
    model_on_cluster,
    parse_scheduler,
)
from napari_unet.distributed.files import (
    FileOutcome,
    FilesResult,
    iter_segment_files,
    outputs_complete,
    segment_files,
)
from napari_unet.distributed.huge_image import (
    ZarrSegmentResult,
    iter_segment_zarr,
    segment_on_scheduler,
    segment_zarr,
)
from napari_unet.distributed.training import (
    RemoteTrainingError,
    iter_train_remote,
    train_on_scheduler,
    train_remote,
)

__all__ = [
    "DEFAULT_RETRIES",
    "ClusterProgress",
    "FileOutcome",
    "FilesResult",
    "RemoteTrainingError",
    "ZarrSegmentResult",
    "connect",
    "iter_segment_files",
    "iter_segment_zarr",
    "iter_train_remote",
    "model_on_cluster",
    "outputs_complete",
    "parse_scheduler",
    "segment_files",
    "segment_on_scheduler",
    "segment_zarr",
    "train_on_scheduler",
    "train_remote",
]
