"""What a bioimage.io package says about its model: card, cover, training data, citations.

Written from the model's architecture and metadata only (:mod:`napari_unet.training.loop`
records them), for :func:`napari_unet.models.bioimageio.export_bioimageio`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_unet.method.network import UNet
from napari_unet.models._bioimageio_format import (
    PROJECT_CITATION,
    RONNEBERGER_2015,
    class_names,
    input_size_rule,
)
from napari_unet.models.metadata import fine_tuned_from_shipped, model_percentiles

#: Search tags of every package.
TAGS = [
    "napari-unet",
    "unet",
    "2d",
    "pytorch",
    "segmentation",
    "instance-segmentation",
    "cells",
    "nuclei",
    "fluorescence-light-microscopy",
]

#: Training data sets the shipped model's metadata names, with their citation (DOI).
DATASETS = {
    "bbbc039": (
        "BBBC039 (U2OS nuclei, Hoechst; CC0)",
        "Caicedo J.C. et al. Evaluation of Deep Learning Strategies for Nucleus "
        "Segmentation in Fluorescence Images. Cytometry A 95:952-965 (2019).",
        "10.1002/cyto.a.23863",
    ),
    "dsb2018": (
        "DSB2018 stage 1 (nuclei, fluorescence and colour; CC0)",
        "Caicedo J.C. et al. Nucleus segmentation across imaging experiments: the 2018 "
        "Data Science Bowl. Nat Methods 16:1247-1253 (2019).",
        "10.1038/s41592-019-0612-7",
    ),
    "usiigaci": (
        "Usiigaci (phase-contrast adherent cells; MIT)",
        "Tsai H.-F. et al. Usiigaci: Instance-aware cell tracking in stain-free phase "
        "contrast microscopy enabled by machine learning. SoftwareX 9:230-237 (2019).",
        "10.1016/j.softx.2019.02.007",
    ),
}


def _training(model: UNet) -> dict:
    return (model.metadata or {}).get("training") or {}


def _class_list(model: UNet) -> str:
    return ", ".join(n.replace("_", " ") for n in class_names(model.config.n_classes))


def summary(model: UNet) -> str:
    """One paragraph: what the model is and how it was trained."""
    metadata = model.metadata or {}
    if metadata.get("description"):
        return str(metadata["description"])
    training = _training(model)
    text = (
        f"U-Net (Ronneberger et al. 2015) for 2D cell segmentation with "
        f"{model.config.n_classes} classes ({_class_list(model)}), trained in napari-unet"
    )
    if fine_tuned_from_shipped(model):
        text += ", fine-tuned from the napari-unet default model"
    elif training.get("fine_tuned_from"):
        text += f", fine-tuned from the model {training['fine_tuned_from']!r}"
    if training.get("n_images"):
        kind = "dense" if training.get("dense") else "partial"
        text += f", on {training['n_images']} image(s) with {kind} annotations"
    return text + "."


def data_citations(metadata: dict) -> list[dict]:
    """Citation entries (DOI only) of the data sets the metadata names."""
    used = ((metadata.get("data") or {}).get("train")) or {}
    return [{"text": DATASETS[k][1], "doi": DATASETS[k][2]} for k in used if k in DATASETS]


def training_data_text(model: UNet) -> str:
    """What the model was trained on, from its metadata."""
    metadata = model.metadata or {}
    data = metadata.get("data") or {}
    training = _training(model)
    if data.get("train"):
        parts = [
            f"{DATASETS[k][0] if k in DATASETS else k}: {n} images"
            for k, n in data["train"].items()
        ]
        text = "Train splits of " + "; ".join(parts) + "."
        if data.get("excluded"):
            text += f" Excluded: {data['excluded']}."
        return text
    if training.get("n_images"):
        kind = (
            "dense ground truth"
            if training.get("dense")
            else "partial annotations (painted cells and background; unpainted pixels ignored)"
        )
        return (
            f"{training['n_images']} image(s) ({training.get('n_planes', '?')} planes) of the "
            f"user's own, with {kind}, annotated in napari-unet. The images are not part of "
            "this package."
        )
    return "Not recorded in the model."


def training_data(model: UNet, authors: list[str]):
    """An inline bioimage.io dataset description of the training data.

    ``authors``: the model's, used for data of the user's own (public data sets name
    their creators in the citations).
    """
    from bioimageio.spec.dataset.v0_3 import Author, CiteEntry, DatasetDescr

    metadata = model.metadata or {}
    public = _used_datasets(metadata)
    creators = [text.split(" et al.")[0] + " et al." for _, text, _ in public] or authors
    return DatasetDescr(
        name="napari-unet training data",
        description=training_data_text(model),
        format_version="0.3.0",
        type="dataset",
        authors=[Author(name=n) for n in dict.fromkeys(creators)],
        cite=[CiteEntry(text=text, doi=doi) for _, text, doi in public],
        tags=["napari-unet", "training-data", "segmentation"],
    )


def _training_settings(model: UNet) -> dict:
    training = _training(model)
    return training.get("config") or {}


def bioimageio_config(model: UNet):
    """The ``config.bioimageio`` entry: model-card fields the spec defines."""
    from bioimageio.spec.model import v0_5

    settings = _training_settings(model)
    training = v0_5.TrainingDetails(
        training_preprocessing=(
            "percentile normalisation per image; augmentation: elastic deformation, "
            "rotation, flips, scaling, gray values, noise"
        ),
        training_batch_size=settings.get("batch_size"),
        initial_learning_rate=settings.get("learning_rate"),
        learning_rate_schedule="cosine, fitted to the time budget",
        loss_function="weighted cross-entropy with the separation-border weight map "
        "(Ronneberger et al. 2015, eq. 2)",
        loss_function_kwargs={k: settings[k] for k in ("w0", "sigma") if k in settings},
        optimizer=settings.get("optimizer"),
    )
    return v0_5.BioimageioConfig(
        architecture_type="U-Net",
        architecture_description=_architecture_text(model),
        modality="fluorescence and phase-contrast light microscopy",
        target_structure=["cells", "nuclei"],
        task="semantic segmentation (instance segmentation after a watershed)",
        model_parameter_count=sum(p.numel() for p in model.parameters()),
        training=training,
        bias_risks_limitations=v0_5.BiasRisksLimitations(limitations=_limitations(model)),
    )


def _architecture_text(model: UNet) -> str:
    c = model.config
    return (
        f"U-Net of depth {c.depth} ({c.depth - 1} poolings) with {c.base_channels} base "
        f"channels{' and batch normalisation' if c.batch_norm else ''}; unpadded 3x3 "
        f"convolutions, so the output is {2 * model.halo} pixels smaller than the input "
        f"on each axis ({model.halo} per side)."
    )


def _limitations(model: UNet) -> str:
    return (
        "The package outputs class probabilities; splitting touching cells into instances "
        "(seeded watershed or threshold, with the settings stored in the model) is done by "
        "napari-unet, not by the bioimage.io pipeline. The normalisation percentiles are "
        "those of the tensor a consumer passes: one that predicts a large image tile by "
        "tile may normalise each tile on its own, where napari-unet normalises the whole "
        "image. 2D only (stacks plane by plane)."
    )


#: Words for the post-processing settings a model stores.
_POSTPROCESSING_WORDS = {
    "threshold": "foreground threshold {}",
    "seed_threshold": "seed threshold {}",
    "min_size": "smallest cell {} px",
}


def _postprocessing_text(model: UNet) -> str:
    metadata = model.metadata or {}
    post = metadata.get("postprocessing") or {}
    items = [_POSTPROCESSING_WORDS.get(k, k + " {}").format(v) for k, v in post.items()]
    if metadata.get("object_size"):
        items.append(f"typical cell diameter {metadata['object_size']} px")
    return ", ".join(items) if items else "napari-unet's defaults"


def _validation_text(model: UNet) -> str:
    metadata = model.metadata or {}
    validation = metadata.get("validation") or {}
    training = _training(model)
    lines = []
    if "ap50" in validation:
        lines.append(
            f"AP@0.5 (average precision at IoU 0.5, as in the 2018 Data Science Bowl) of "
            f"{validation['ap50']:.3f} on {validation.get('n_images', '?')} validation "
            "images of the same data sets (used to choose the post-processing settings)."
        )
    if training.get("best_validation_score") is not None:
        lines.append(
            f"Foreground IoU on the validation images during training: "
            f"{training['best_validation_score']:.3f}."
        )
    if not lines:
        lines.append("This model was not validated on held-out images.")
    lines.append(
        "To validate it on your own data, segment annotated images that were not used for "
        "training and compare with `napari_unet.metrics.average_precision` (AP@0.5) or "
        "`napari_unet.metrics.seg_score` (the Cell Tracking Challenge SEG score)."
    )
    return "\n\n".join(lines)


def _procedure_text(model: UNet) -> str:
    training = _training(model)
    settings = _training_settings(model)
    if not training:
        return "Not recorded in the model."

    def pair(a, b, fmt="{}, {}"):
        return None if a is None or b is None else fmt.format(a, b)

    tile = training.get("tile_shape") or [None, None]
    rows = {
        "iterations": training.get("iterations_done"),
        "weights kept from iteration": training.get("best_iteration"),
        "batch size": settings.get("batch_size"),
        "input tile": pair(*tile, "{} × {} px"),
        "optimizer, learning rate": pair(settings.get("optimizer"), settings.get("learning_rate")),
        "weight map (eq. 2)": pair(settings.get("w0"), settings.get("sigma"), "w0 = {}, σ = {} px"),
        "device, precision": pair(training.get("device"), training.get("precision")),
        "training time": None
        if training.get("seconds") is None
        else f"{training['seconds']:.0f} s",
        "seed": training.get("seed"),
        "PyTorch": training.get("torch"),
    }
    return "\n".join(f"- {k}: {v}" for k, v in rows.items() if v is not None)


def model_card(model: UNet, name: str) -> str:
    """The package's README.md (the sections the bioimage.io model card template has).

    Parameters
    ----------
    model : UNet
        The exported network, with its metadata.
    name : str
        The package name (the title).
    """
    import torch

    from napari_unet import __version__

    smallest, step = input_size_rule(model)
    low, high = model_percentiles(model)
    metadata = model.metadata or {}
    parent = (
        "\n- **Fine-tuned from:** the napari-unet default model"
        if fine_tuned_from_shipped(model)
        else ""
    )
    data = "".join(f"\n- {text} doi:{doi}" for _, text, doi in _used_datasets(metadata))
    return f"""# {name}

{summary(model)}

## Model Details

- **Architecture:** {_architecture_text(model)}
- **Input:** `image` (batch, channel, y, x), {model.config.in_channels} channel(s); y and x
  of {smallest} + n·{step} pixels (n = 0, 1, 2, …).
- **Preprocessing:** percentile normalisation, the {low:g} and {high:g} percentiles of
  the input mapped to 0 and 1 (`scale_range`).
- **Output:** `probabilities` (batch, channel, y, x), softmax over the classes
  ({_class_list(model)}); {2 * model.halo} pixels smaller than the input on each axis.
- **Developed with:** napari-unet {__version__}{parent}

## Uses

### Direct Use

Segmenting cells or nuclei in 2D light-microscopy images like the training data. For one
label per cell, load this package in napari-unet (napari widgets, Python or the command
line), which splits the probabilities into cells with the stored settings
({_postprocessing_text(model)}).

### Out-of-Scope Use

3D segmentation, image types far from the training data (electron microscopy, tissue
sections) without fine-tuning, and any use of the output without checking it.

## Bias, Risks, and Limitations

{_limitations(model)} Accuracy drops on cell types, stains and magnifications the
training data did not cover; fine-tune on a few annotated images of your own
(napari-unet's Train widget) and validate before relying on the results.

## How to Get Started with the Model

```bash
napari-unet segment images/ -o masks/ -m this-package.zip   # one label per cell
bioimageio test this-package.zip                            # the bioimage.io model test
```

```python
import napari_unet
model = napari_unet.load_model("this-package.zip")
labels = napari_unet.segment(image, model)
```

## Training Details

### Training Data

{training_data_text(model)}

### Training Procedure

{_procedure_text(model)}

## Validation

{_validation_text(model)}

## Technical Specifications

Weights: `pytorch_state_dict` (architecture `UNet` in `network.py`, which needs only
PyTorch) and `torchscript`, exported with PyTorch {torch.__version__}. The test input is
a crop of the BBBC039 nuclei field shipped with napari-unet (CC0); the test output is
what this model computes from it.

## Citation

- {RONNEBERGER_2015["text"]} doi:{RONNEBERGER_2015["doi"]}
- {PROJECT_CITATION}{data}
"""


def _used_datasets(metadata: dict) -> list[tuple]:
    used = ((metadata.get("data") or {}).get("train")) or {}
    return [DATASETS[k] for k in used if k in DATASETS]


def write_cover(path: Path, test_input: np.ndarray, test_output: np.ndarray, halo: int) -> Path:
    """Write a 2:1 PNG cover: the input (left) beside its class probabilities (right).

    Parameters
    ----------
    path : pathlib.Path
        PNG to write.
    test_input : np.ndarray
        ``(C, H, W)`` float32 image.
    test_output : np.ndarray
        ``(n_classes, H - 2 halo, W - 2 halo)`` probabilities.
    halo : int
        Pixels the network removes per side.
    """
    import imageio.v3 as iio

    from napari_unet.method.images import DEFAULT_PERCENTILES, normalize, percentile_normalization

    image = test_input[0, halo:-halo, halo:-halo]
    gray = np.clip(normalize(image, *percentile_normalization(image, DEFAULT_PERCENTILES)), 0, 1)
    left = np.repeat(gray[..., None], 3, axis=-1)
    colours = np.array([[0, 0, 0], [0.1, 0.9, 0.2], [1.0, 0.2, 0.8]])  # background, in, edge
    if test_output.shape[0] != len(colours):
        colours = np.array([[0, 0, 0]] + [[0.1, 0.9, 0.2]] * (test_output.shape[0] - 1))
    right = np.einsum("chw,ck->hwk", test_output, colours)
    cover = np.concatenate([left, np.clip(right, 0, 1)], axis=1)
    cover = np.kron(cover, np.ones((2, 2, 1)))  # 2x larger, nearest neighbour
    iio.imwrite(path, (255 * cover).round().astype(np.uint8))
    return path
