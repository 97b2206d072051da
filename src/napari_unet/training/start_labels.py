"""Start labels: the starting model's confident classes on the pixels nobody painted.

A fine-tune on a few painted cells sees their pixels and a thin ring of painted
background, and nothing else of the image. Trained on those alone, the network forgets
what the starting model knew about the rest (that the far background is background,
what a whole cell looks like) and adds fragments there: with 10 painted cells the
fine-tuned model's AP@0.5 fell below the starting model's while its SEG rose
(docs/benchmarks.md). Where the starting model is confident, its own class is therefore
kept as a weak target on the unpainted pixels (self-training with pseudo-labels, Lee
2013; learning without forgetting, Li & Hoiem 2017), while the painted pixels, weighted
by eq. 2 of Ronneberger et al. 2015, decide wherever the user painted.

Cells held out of training (:mod:`napari_unet.training.painted_score`) get no start
label either: they stay an independent measure of the fine-tune. Only 2D planes get
start labels; a volume's painted planes and views are trained on the painting alone.
"""

from __future__ import annotations

import numpy as np

from napari_unet.method.tiling import predict_tiled

#: Smallest class probability of the starting model for a start label on a pixel.
START_LABEL_CONFIDENCE = 0.9


def add_start_labels(samples: list, model, annotations, *, weight: float, device) -> int:
    """Give the starting model's confident classes a weak weight on unpainted pixels.

    Parameters
    ----------
    samples : list of Sample
        From :func:`napari_unet.training.samples.prepare_samples`; their ``target`` and
        ``weights`` are replaced (new arrays), their tile centres (``annotated``) stay
        on the painted pixels. Samples without an ``origin`` (a volume's) are left as
        they are.
    model : UNet
        The starting model (not modified).
    annotations : sequence of array-like
        The user's annotations as given, partial convention (before any cell was held
        out): a pixel the user painted in any way never gets a start label.
    weight : float
        Weight of a start label, > 0.
    device : torch.device
        Where the starting model runs.

    Returns
    -------
    int
        Pixels given a start label.
    """
    labelled = 0
    for sample in samples:
        if sample.origin is None:
            continue
        n, index = sample.origin
        painted = np.asarray(annotations[n])[index] != 0
        p = predict_tiled(sample.image, model, normalization=(0.0, 1.0), device=device)
        free = ~painted & (sample.weights == 0) & (p.max(0) >= START_LABEL_CONFIDENCE)
        sample.target = np.where(free, p.argmax(0), sample.target).astype(sample.target.dtype)
        sample.weights = np.where(free, np.float32(weight), sample.weights).astype(np.float32)
        labelled += int(free.sum())
    return labelled
