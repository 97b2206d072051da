"""Small regions of planes predicted in batches, one tile each (overlap-tile context).

Used to score a network on a few cells spread over several images (the held-out painted
cells, :mod:`napari_unet.training.painted_score`) at the cost of a few forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_unet.method.images import to_float32
from napari_unet.method.network import UNet
from napari_unet.method.tiling import (
    _check_classes,
    _inference_copy,
    _read_mirrored,
    mirror_index,
)
from napari_unet.runtime.devices import resolve_device, resolve_precision


def predict_regions(
    regions: Sequence[tuple[np.ndarray, tuple[float, float], tuple[slice, slice]]],
    model: UNet,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    output_classes: Sequence[int] | None = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Class probabilities of small regions of planes, one tile per region, in batches.

    Each region is predicted from one tile: the region plus the network's halo of the
    plane's own pixels around it (mirrored only beyond the plane's border, Fig. 2), so
    small regions of several planes (e.g. held-out cells) cost a few batched forward
    passes instead of a prediction each.

    Parameters
    ----------
    regions : sequence of (plane, (low, high), (slice, slice))
        A 2D plane (any real dtype), its normalisation, and the region of it to predict.
    model : UNet
        The network (not modified; a copy runs in eval mode).
    device, precision : str or torch.device
        As for :func:`iter_predict_tiled`.
    output_classes : sequence of int, optional
        Class indices to return; all when ``None``.
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    list of numpy.ndarray
        float32 ``(len(output_classes), height, width)`` per region.
    """
    if not regions:
        return []
    classes = _check_classes(output_classes, model)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    side_y = max(box[0].stop - box[0].start for _, _, box in regions)
    side_x = max(box[1].stop - box[1].start for _, _, box in regions)
    tile_y, tile_x = model.input_shape_for_output((side_y, side_x))
    halo = model.halo
    network = _inference_copy(model, torch_device, dtype)
    class_index = torch.tensor(classes, device=torch_device)
    results = []
    for start in range(0, len(regions), batch_size):
        chunk = regions[start : start + batch_size]
        tiles = np.stack(
            [
                to_float32(
                    _read_mirrored(
                        plane,
                        mirror_index(
                            np.arange(ys.start - halo, ys.start - halo + tile_y), plane.shape[0]
                        ),
                        mirror_index(
                            np.arange(xs.start - halo, xs.start - halo + tile_x), plane.shape[1]
                        ),
                    ),
                    normalization,
                )
                for plane, normalization, (ys, xs) in chunk
            ]
        )
        with torch.inference_mode():
            batch = torch.from_numpy(tiles).to(torch_device, dtype)
            logits = network(batch.contiguous(memory_format=torch.channels_last))
            kept = logits.float().softmax(dim=1).index_select(1, class_index).cpu().numpy()
        for (_, _, (ys, xs)), probabilities in zip(chunk, kept, strict=True):
            results.append(
                np.ascontiguousarray(probabilities[:, : ys.stop - ys.start, : xs.stop - xs.start])
            )
    return results
