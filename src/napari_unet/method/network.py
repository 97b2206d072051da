"""The U-Net of Ronneberger, Fischer & Brox (MICCAI 2015), Fig. 1.

A contracting path of two unpadded 3×3 convolutions + ReLU followed by 2×2 max-pooling
(stride 2; channels double at each step), an expansive path of 2×2 up-convolutions that
halve the channels, copy-and-crop concatenation with the contracting feature map, two
unpadded 3×3 convolutions + ReLU, and a final 1×1 convolution to the class scores.
With ``depth=5`` and ``base_channels=64`` this is the paper's network: 64 → 1024
channels, 23 convolutional layers, a 572×572 input gives a 388×388 output.

Because every convolution is unpadded ("valid"), the output is smaller than the input
by a fixed border (the *halo*), which is what makes overlap-tile prediction seamless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from napari_unet.runtime.checks import short_repr


@dataclass(frozen=True)
class UNetConfig:
    """Architecture settings of a :class:`UNet`.

    Attributes
    ----------
    in_channels : int
        Number of input channels (1 for grayscale microscopy).
    n_classes : int
        Number of output classes (2: background, cell).
    depth : int
        Number of resolution levels; ``depth - 1`` max-pooling steps. The paper uses 5.
    base_channels : int
        Feature channels at the first level; doubled at every level. The paper uses 64.
    batch_norm : bool
        Insert batch normalisation after each 3×3 convolution. Not in the paper (which
        predates it); it speeds up training from scratch and, in inference mode, is a
        per-channel affine map, so overlap-tile prediction stays exact.
    """

    in_channels: int = 1
    n_classes: int = 2
    depth: int = 5
    base_channels: int = 64
    batch_norm: bool = False

    def __post_init__(self):
        for name in ("in_channels", "n_classes", "depth", "base_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"UNetConfig.{name} must be a positive integer, got {short_repr(value)}"
                )
        if self.n_classes < 2:
            raise ValueError(f"UNetConfig.n_classes must be at least 2, got {self.n_classes}")
        if self.depth < 2:
            raise ValueError(f"UNetConfig.depth must be at least 2, got {self.depth}")
        if not isinstance(self.batch_norm, bool):
            raise ValueError(
                f"UNetConfig.batch_norm must be True or False, got {short_repr(self.batch_norm)}"
            )

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


class DoubleConvolution(nn.Sequential):
    """Two unpadded 3×3 convolutions, each followed by ReLU (paper, Fig. 1 blue arrows).

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H - 4, W - 4)``.
    """

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False):
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, kernel_size=3, padding=0))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class CropAndConcat(nn.Module):
    """Copy and crop (paper, Fig. 1 grey arrows).

    Centre-crops the contracting-path feature map ``skip`` ``(N, C1, H1, W1)`` to the
    spatial size of ``x`` ``(N, C2, H2, W2)`` and concatenates along channels, giving
    ``(N, C1 + C2, H2, W2)``. The crop is needed because unpadded convolutions lose
    border pixels.
    """

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        dy = (skip.shape[-2] - x.shape[-2]) // 2
        dx = (skip.shape[-1] - x.shape[-1]) // 2
        skip = skip[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
        return torch.cat([skip, x], dim=1)


class ExpansiveStep(nn.Module):
    """2×2 up-convolution halving the channels, copy-and-crop, two 3×3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False):
        super().__init__()
        self.up_convolution = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.crop_and_concat = CropAndConcat()
        self.double_convolution = DoubleConvolution(2 * out_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.double_convolution(self.crop_and_concat(self.up_convolution(x), skip))


class UNet(nn.Module):
    """U-Net for 2D images (Ronneberger et al. 2015, Fig. 1).

    Parameters
    ----------
    in_channels, n_classes, depth, base_channels, batch_norm
        See :class:`UNetConfig`. Defaults give the paper's network for one grayscale
        channel and two classes.
    config : UNetConfig, optional
        Settings as one object; when given, the other arguments must be left out.

    Notes
    -----
    ``forward`` maps logits of shape ``(N, in_channels, H, W)`` (float) to class scores
    (logits) ``(N, n_classes, H', W')`` with ``(H', W') = valid_output_shape((H, W))``.
    ``(H, W)`` must be a valid input shape (see :meth:`valid_input_shape`): every
    feature map before a max-pooling must have an even size. The weights are
    initialised as in the paper: Gaussian with standard deviation ``sqrt(2 / N)``,
    N = incoming connections of a neuron (He initialisation).

    The attribute ``metadata`` (a dict, empty for a new network) carries what a model
    file records beside the weights: normalisation and training settings.
    """

    # Shape helpers, not part of ``forward``: torch.jit.script (the bioimage.io
    # torchscript weights) compiles properties unless they are listed here.
    __jit_unused_properties__ = ["halo", "pooling_factor"]

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 5,
        base_channels: int = 64,
        batch_norm: bool = False,
        *,
        config: UNetConfig | None = None,
    ):
        super().__init__()
        if config is None:
            config = UNetConfig(in_channels, n_classes, depth, base_channels, batch_norm)
        self.config = config
        self.metadata: dict = {}
        channels = [config.base_channels * 2**level for level in range(config.depth)]
        self.contracting_path = nn.ModuleList()
        c_in = config.in_channels
        for c_out in channels:
            self.contracting_path.append(DoubleConvolution(c_in, c_out, config.batch_norm))
            c_in = c_out
        self.max_pool = nn.MaxPool2d(2, stride=2)
        self.expansive_path = nn.ModuleList(
            ExpansiveStep(channels[level + 1], channels[level], config.batch_norm)
            for level in reversed(range(config.depth - 1))
        )
        self.head = nn.Conv2d(channels[0], config.n_classes, kernel_size=1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    # -- shapes -----------------------------------------------------------------------
    @property
    def pooling_factor(self) -> int:
        """Total down-sampling factor ``2 ** (depth - 1)`` (16 for the paper's network).

        Shifting the input by a multiple of this shifts the output by the same amount;
        overlap-tile prediction therefore places tile origins on this grid.
        """
        return 2 ** (self.config.depth - 1)

    def _output_size(self, size: int) -> int | None:
        """Output size along one axis, or None when ``size`` is not a valid input size."""
        for _ in range(self.config.depth - 1):
            size -= 4
            if size < 2 or size % 2:
                return None
            size //= 2
        size -= 4
        if size < 1:
            return None
        for _ in range(self.config.depth - 1):
            size = 2 * size - 4
        return size if size >= 1 else None

    def valid_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape.

        Parameters
        ----------
        input_shape : tuple of int
            ``(H, W)`` in pixels.

        Returns
        -------
        tuple of int
            ``(H', W')``; ``H - H' == W - W' == 2 * halo``.

        Raises
        ------
        ValueError
            If ``input_shape`` is not valid; the message names the nearest valid shape.
        """
        out = tuple(self._output_size(int(s)) for s in input_shape)
        if any(o is None for o in out):
            above = self.valid_input_shape(input_shape)
            below = tuple(self._largest_valid_at_most(int(s)) for s in input_shape)
            raise ValueError(
                f"input shape {tuple(input_shape)} is not valid for this U-Net (depth "
                f"{self.config.depth}): every feature map before a 2x2 max-pooling must have "
                f"an even size; the nearest valid input shapes are {below} and {above}"
            )
        return out  # type: ignore[return-value]

    def valid_input_shape(self, min_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Smallest valid spatial input shape that is at least ``min_shape`` on every axis."""
        result = []
        for s in min_shape:
            s = max(int(s), 1)
            while self._output_size(s) is None:
                s += 1
            result.append(s)
        return tuple(result)

    def _largest_valid_at_most(self, size: int) -> int | None:
        while size > 0 and self._output_size(size) is None:
            size -= 1
        return size if size > 0 else None

    def input_shape_for_output(self, min_output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Smallest valid input shape whose output covers ``min_output_shape``."""
        return self.valid_input_shape(tuple(int(s) + 2 * self.halo for s in min_output_shape))

    @property
    def halo(self) -> int:
        """Pixels lost on each side between input and output (92 for the paper's network)."""
        size = self.valid_input_shape((1,))[0]
        return (size - self._output_size(size)) // 2  # type: ignore[operator]

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits).

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)``, float, ``(H, W)`` a valid input shape.

        Returns
        -------
        torch.Tensor
            ``(N, n_classes, H', W')`` logits, ``(H', W') = valid_output_shape((H, W))``.
        """
        skips = []
        for level, double_convolution in enumerate(self.contracting_path):
            if level:
                x = self.max_pool(x)
            x = double_convolution(x)
            skips.append(x)
        skips.pop()  # the bottom level feeds the expansive path directly
        for step in self.expansive_path:
            x = step(x, skips.pop())
        return self.head(x)

    def n_conv_layers(self) -> int:
        """Number of convolutional layers (23 for the paper's depth of 5)."""
        return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in self.modules())


def with_boundary_class(model: UNet) -> UNet:
    """A copy of a two-class U-Net with a third output class, *cell boundary*.

    Every layer is copied; the 1×1 head gains one output whose weights start as the
    mean of the background and cell outputs, with its bias 2 lower, so the widened
    network at first predicts what the two-class one did (boundary probability about
    0.1 where the two classes are equally likely) and fine-tuning only has to learn
    the boundary. Used to fine-tune a two-class model (the paper's target) for the
    three-class target (:data:`napari_unet.method.annotation.TARGET_CLASSES`).

    Parameters
    ----------
    model : UNet
        A network with ``n_classes == 2``; not modified.

    Returns
    -------
    UNet
        ``n_classes == 3``, same mode (train/eval) and ``metadata`` (copied).

    Raises
    ------
    ValueError
        If ``model`` does not have two classes.
    """
    import copy
    from dataclasses import replace

    if model.config.n_classes != 2:
        raise ValueError(
            f"only a two-class U-Net can gain a boundary class, this one has "
            f"{model.config.n_classes} classes"
        )
    widened = UNet(config=replace(model.config, n_classes=3))
    state = model.state_dict()
    head_weight, head_bias = state.pop("head.weight"), state.pop("head.bias")
    widened.load_state_dict(state, strict=False)
    with torch.no_grad():
        widened.head.weight.copy_(torch.cat([head_weight, head_weight.mean(0, keepdim=True)]))
        widened.head.bias.copy_(torch.cat([head_bias, head_bias.mean(0, keepdim=True) - 2.0]))
    widened.metadata = copy.deepcopy(getattr(model, "metadata", {}) or {})
    return widened.train(model.training)
