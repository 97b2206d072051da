"""bioimage.io model packages: export a U-Net as a zip that passes the official model test.

An exported package (`bioimage.io <https://bioimage.io>`_ model description format 0.5)
is for bioimage.io consumers (``bioimageio.core``, ilastik, deepImageJ/Fiji, QuPath)
and passes the official model test (``bioimageio test package.zip``):

- weights as ``pytorch_state_dict`` (the architecture is this package's
  :class:`~napari_unet.method.network.UNet`, shipped as ``network.py``, which imports only
  torch) and ``torchscript``;
- one input ``(batch, channel, y, x)`` of any valid size ``min + n * step``
  (:meth:`~napari_unet.method.network.UNet.valid_input_shape`); the output's ``y`` and ``x``
  are the input's minus the border the unpadded convolutions remove (a negative
  ``offset``, not a ``halo``: the network itself crops it);
- preprocessing: the model's percentile normalisation (``scale_range``);
  postprocessing: softmax over the classes;
- test tensors (``.npy``) from a crop of the shipped nuclei sample, sample tensors
  (TIFF), a cover, and a model card (README.md) written from the model's metadata.

Everything in a package is a local file: no ``github_user``, no http(s) source, citations
by DOI, so validating and testing it never touches the network.

:func:`napari_unet.models.files.load_model` loads such a package back
(:mod:`napari_unet.models._bioimageio_load`) without running code from it.

Exporting needs the optional dependencies ``pip install "napari-unet-cells[bioimageio]"``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from napari_unet.method.folded_network import fold_for_inference
from napari_unet.method.network import UNet
from napari_unet.models._bioimageio_format import (  # noqa: F401 (re-exported)
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_FILE,
    CONFIG_KEY,
    DEFAULT_LICENSE,
    DESCRIPTION_FILES,
    INPUT_ID,
    INSTALL_HINT,
    OUTPUT_ID,
    PROJECT_CITATION,
    RONNEBERGER_2015,
    SHIPPED_AUTHOR,
    SHIPPED_MODEL_ID,
    TEST_IMAGE,
    TEST_OUTPUT_SIZE,
    UNKNOWN_AUTHOR,
    class_names,
    input_size_rule,
)
from napari_unet.models.files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    as_model,
)
from napari_unet.models.metadata import fine_tuned_from_shipped, is_shipped, model_percentiles  # noqa: F401


def require_bioimageio() -> None:
    """Raise an ImportError that says how to install the extra when it is missing."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"exporting to bioimage.io needs bioimageio.spec and bioimageio.core: {INSTALL_HINT}"
        ) from error


def export_bioimageio(
    model: UNet | str | os.PathLike,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | tuple[str, ...] | None = None,
    license: str = DEFAULT_LICENSE,
    test_image: np.ndarray | None = None,
) -> Path:
    """Write a model as a bioimage.io model package (format 0.5, zip), atomically.

    Parameters
    ----------
    model : UNet, str or path
        A network, a model file, or a shipped model name (``"default"``).
    path : str or os.PathLike
        The zip to write (``.zip`` is the convention: ``name.bioimageio.zip``).
    name : str, optional
        Human-readable name (5 to 128 letters, digits, spaces, ``_+-()``); default from
        the model (shipped or fine-tuned).
    description : str, optional
        One-paragraph description; default: the model's own, or one written from its
        training metadata.
    authors : sequence of str, optional
        Names of the people who trained the model; default: the project's developers
        for the shipped model, else a placeholder to edit.
    license : str
        SPDX licence identifier of the weights (:data:`DEFAULT_LICENSE`).
    test_image : np.ndarray, optional
        ``(Y, X)`` or ``(C, Y, X)`` image, any numeric dtype, at least as large as the
        test input (:func:`crop_shape`); its centre crop becomes the test and
        sample input. Default: the shipped nuclei sample (:data:`TEST_IMAGE`).

    Returns
    -------
    pathlib.Path
        The package written.

    Raises
    ------
    ImportError
        If ``bioimageio.spec`` is not installed (the message says how to install it).
    ValueError
        If the description does not validate (for example an invalid ``name``), the
        test image is too small or has the wrong number of channels, or ``model`` is
        not a model (as :func:`napari_unet.models.files.as_model`).
    FileNotFoundError
        If the model file does not exist.
    OSError
        If ``path`` cannot be written.
    """
    require_bioimageio()
    from bioimageio.spec import save_bioimageio_package_to_stream

    from napari_unet.io.files import atomic_path

    net = _cpu_copy(as_model(model))
    name = name or default_name(net)
    with tempfile.TemporaryDirectory(prefix="napari-unet-bioimageio-") as folder:
        files = _write_files(net, Path(folder), name, test_image)
        descr = _describe(net, files, name, description, authors, license)
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            save_bioimageio_package_to_stream(descr, output_stream=stream)
    return Path(path)


def _cpu_copy(model: UNet) -> UNet:
    """A float32 CPU copy in eval mode (the caller's network is not touched)."""
    net = UNet(config=model.config)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    net.metadata = copy.deepcopy(getattr(model, "metadata", {}) or {})
    return net.eval()


def crop_shape(model: UNet) -> tuple[int, int]:
    """Spatial shape of the test input crop.

    The smallest valid input whose output covers :data:`TEST_OUTPUT_SIZE` pixels on
    each axis (284 x 284 for depth 5).
    """
    return model.input_shape_for_output((TEST_OUTPUT_SIZE, TEST_OUTPUT_SIZE))


def _test_crop(model: UNet, image: np.ndarray | None) -> np.ndarray:
    """The centre crop of the test image as ``(1, C, H, W)`` float32."""
    if image is None:
        from napari_unet._sample_data import _read

        image = _read(TEST_IMAGE)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    channels = model.config.in_channels
    if image.ndim != 3 or image.shape[0] != channels:
        raise ValueError(
            f"test_image must be (Y, X) or (C, Y, X) with C = {channels} (the model's "
            f"input channels), got shape {image.shape}"
        )
    shape = crop_shape(model)
    if any(s < t for s, t in zip(image.shape[1:], shape, strict=True)):
        raise ValueError(
            f"test_image {image.shape[1:]} is smaller than the test input {shape} this "
            "network needs"
        )
    y0, x0 = ((s - t) // 2 for s, t in zip(image.shape[1:], shape, strict=True))
    crop = image[:, y0 : y0 + shape[0], x0 : x0 + shape[1]]
    return crop[None].astype(np.float32)


def _predict(model: UNet, test_input: np.ndarray) -> np.ndarray:
    """What the package computes: normalise as the model does, forward, softmax."""
    from napari_unet.method.images import normalize, percentile_normalization

    low, high = percentile_normalization(test_input[0], model_percentiles(model))
    with torch.inference_mode():
        logits = model(torch.from_numpy(normalize(test_input, low, high)))
    return torch.softmax(logits, dim=1).numpy()


def _write_files(model: UNet, folder: Path, name: str, test_image) -> dict[str, Path]:
    """Write every file of the package into ``folder``; return them by role."""
    from importlib import resources

    import tifffile

    from napari_unet.models import _bioimageio_card as card

    files = {
        "state_dict": folder / "weights.pt",
        "torchscript": folder / "weights_torchscript.pt",
        "architecture": folder / ARCHITECTURE_FILE,
        "test_input": folder / "test_input.npy",
        "test_output": folder / "test_output.npy",
        "sample_input": folder / "sample_input.tif",
        "sample_output": folder / "sample_output.tif",
        "cover": folder / "cover.png",
        "documentation": folder / "README.md",
    }
    torch.save(model.state_dict(), files["state_dict"])
    with warnings.catch_warnings():
        # TorchScript is deprecated from torch 2.13 on, but it is the weights format
        # bioimage.io consumers (deepImageJ, Fiji) run
        warnings.filterwarnings("ignore", r".*torch\.jit", DeprecationWarning)
        # The prediction network: batch norm folded, no concatenation; standard operators
        # only (fused=False), so any libtorch runs it. Same outputs to ~1e-6.
        scripted = torch.jit.script(fold_for_inference(model, fused=False))
        torch.jit.save(scripted, str(files["torchscript"]))
    source = resources.files("napari_unet.method") / ARCHITECTURE_FILE
    files["architecture"].write_bytes(source.read_bytes())
    test_input = _test_crop(model, test_image)
    test_output = _predict(model, test_input)
    np.save(files["test_input"], test_input)
    np.save(files["test_output"], test_output)
    tifffile.imwrite(files["sample_input"], test_input[0], photometric="minisblack")
    tifffile.imwrite(files["sample_output"], test_output[0], photometric="minisblack")
    card.write_cover(files["cover"], test_input[0], test_output[0], model.halo)
    files["documentation"].write_text(card.model_card(model, name), encoding="utf-8")
    return files


def _tensors(model: UNet, files: dict, v0_5) -> tuple:
    """Input and output tensor descriptions: axes, sizes, processing, test tensors."""
    smallest, step = input_size_rule(model)
    channels = model.config.in_channels
    names = ["intensity"] if channels == 1 else [f"channel{i}" for i in range(channels)]
    low, high = model_percentiles(model)
    spatial = [v0_5.AxisId("y"), v0_5.AxisId("x")]
    image = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description="image, any intensity range (normalised by percentiles)",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=names),
            *(
                v0_5.SpaceInputAxis(id=a, size=v0_5.ParameterizedSize(min=smallest, step=step))
                for a in spatial
            ),
        ],
        test_tensor=v0_5.FileDescr(source=files["test_input"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_input"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(
                    axes=[v0_5.AxisId("channel"), *spatial],  # per image, jointly
                    min_percentile=low,
                    max_percentile=high,
                )
            )
        ],
    )
    # The network crops its border itself: the output size is the input's with a
    # negative offset (a halo would tell consumers to crop it once more).
    border = v0_5.TensorId(INPUT_ID), -2 * model.halo
    probabilities = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description="class probabilities (softmax)",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=class_names(model.config.n_classes)),
            *(
                v0_5.SpaceOutputAxis(
                    id=a,
                    size=v0_5.SizeReference(tensor_id=border[0], axis_id=a, offset=border[1]),
                )
                for a in spatial
            ),
        ],
        test_tensor=v0_5.FileDescr(source=files["test_output"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_output"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[v0_5.SoftmaxDescr(kwargs=v0_5.SoftmaxKwargs(axis=v0_5.AxisId("channel")))],
    )
    return image, probabilities


def _weights(model: UNet, files: dict, v0_5):
    """Both weights entries: the state dict with its architecture, and TorchScript."""
    version = v0_5.Version(torch.__version__.split("+")[0])
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=files["state_dict"],
            architecture=v0_5.ArchitectureFromFileDescr(
                source=files["architecture"],
                callable=v0_5.Identifier(ARCHITECTURE_CALLABLE),
                kwargs=model.config.to_dict(),
            ),
            pytorch_version=version,
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=files["torchscript"], pytorch_version=version, parent="pytorch_state_dict"
        ),
    )


def _describe(model: UNet, files: dict, name: str, description, authors, license):
    """The bioimage.io ``ModelDescr`` of an exported model (validated on creation)."""
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5

    from napari_unet import __version__
    from napari_unet.models import _bioimageio_card as card

    shipped = is_shipped(model)
    names = list(authors or [SHIPPED_AUTHOR if shipped else UNKNOWN_AUTHOR])
    links = {}  # set only when there is one: an explicit None is written out
    if shipped:
        links["id"] = v0_5.ModelId(SHIPPED_MODEL_ID)
    elif fine_tuned_from_shipped(model):
        links["parent"] = v0_5.LinkedModel(id=v0_5.ModelId(SHIPPED_MODEL_ID))
    ours = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": __version__,
        "architecture": model.config.to_dict(),
        # JSON, not YAML: the metadata comes back exactly (YAML would turn ISO dates
        # into datetime objects)
        "metadata": json.dumps(model.metadata),
    }
    image, probabilities = _tensors(model, files, v0_5)
    with ValidationContext(root=files["cover"].parent, perform_io_checks=True):
        try:
            return v0_5.ModelDescr(
                name=name,
                description=description or card.summary(model),
                **links,
                authors=[v0_5.Author(name=n) for n in names],
                cite=[v0_5.CiteEntry(**RONNEBERGER_2015), *card.data_citations(model.metadata)],
                license=license,
                tags=card.TAGS,
                covers=[v0_5.FileDescr(source=files["cover"])],
                documentation=v0_5.FileDescr(source=files["documentation"]),
                inputs=[image],
                outputs=[probabilities],
                weights=_weights(model, files, v0_5),
                training_data=card.training_data(model, names),
                config=v0_5.Config(bioimageio=card.bioimageio_config(model), **{CONFIG_KEY: ours}),
            )
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"the bioimage.io description does not validate: {error}") from error


def default_name(model: UNet) -> str:
    """The package name used when none is given."""
    if is_shipped(model):
        return "napari-unet default U-Net (nuclei and cells)"
    if fine_tuned_from_shipped(model):
        return "napari-unet U-Net fine-tuned from the default model"
    return "napari-unet U-Net"
