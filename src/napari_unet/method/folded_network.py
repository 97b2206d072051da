"""The U-Net rebuilt for prediction: the same function with less work outside the convolutions.

A trained :class:`~napari_unet.method.network.UNet` in eval mode computes exactly what this
network computes, with three changes to *how* (none to *what*):

- **batch normalisation folded** into the 3×3 convolution before it: in eval mode it is
  the per-channel affine map ``y = γ (x - μ) / sqrt(σ² + ε) + β``, so the convolution's
  weights are scaled by ``s = γ / sqrt(σ² + ε)`` and its bias becomes ``s (b - μ) + β``
  (one pass over the feature map fewer per convolution);
- **ReLU in place** on the convolution's output (``torch.relu_``, no new tensor);
- **copy-and-crop without the concatenation** (paper Fig. 1, grey arrows): the first 3×3
  convolution of an expansive step sees ``cat([crop(skip), up])``; a convolution is
  linear in its input channels, so it equals the sum of one convolution over
  ``crop(skip)`` (the weights' first half of the input channels, with the bias) and one
  over ``up`` (the second half, no bias). The concatenated tensor is never built.

It agrees with the unfolded network to rounding (1e-5 relative in float32; tested on the
shipped model and sample). Prediction (:mod:`napari_unet.method.tiling`, and so ``segment()``,
the live preview, the block-wise and cluster paths) and the bioimage.io torchscript
weights use it. Training uses :class:`~napari_unet.method.network.UNet`: batch norm's batch
statistics and its gradient need the unfolded layers.
"""

# No ``from __future__ import annotations``: torch.jit.script reads these annotations.
import torch
from torch import nn

from napari_unet.method.network import DoubleConvolution, UNet

__all__ = ["FoldedUNet", "fold_for_inference"]


def _conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias))``, unpadded, in one oneDNN kernel (CPU only)."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, [0, 0], [1, 1], [1, 1], 1, "relu", [], ""
    )


def _fold(convolution: nn.Conv2d, batch_norm: nn.BatchNorm2d | None) -> nn.Conv2d:
    """A copy of ``convolution`` with the eval-mode ``batch_norm`` after it folded in."""
    folded = nn.Conv2d(
        convolution.in_channels, convolution.out_channels, convolution.kernel_size, bias=True
    )
    weight = convolution.weight.detach().double()
    bias = (
        convolution.bias.detach().double()
        if convolution.bias is not None
        else torch.zeros(convolution.out_channels, dtype=torch.float64)
    )
    if batch_norm is not None:
        scale = batch_norm.weight.detach().double() / torch.sqrt(
            batch_norm.running_var.detach().double() + batch_norm.eps
        )
        weight = weight * scale[:, None, None, None]
        bias = scale * (bias - batch_norm.running_mean.detach().double())
        bias = bias + batch_norm.bias.detach().double()
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
    return folded


def _folded_pair(block: DoubleConvolution) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The two convolutions of a :class:`DoubleConvolution`, batch norm folded in."""
    convolutions: list[nn.Conv2d] = []
    pending: nn.Conv2d | None = None
    for layer in block:
        if isinstance(layer, nn.Conv2d):
            if pending is not None:
                convolutions.append(_fold(pending, None))
            pending = layer
        elif isinstance(layer, nn.BatchNorm2d):
            if pending is None:
                raise ValueError("batch normalisation without a convolution before it")
            convolutions.append(_fold(pending, layer))
            pending = None
    if pending is not None:
        convolutions.append(_fold(pending, None))
    if len(convolutions) != 2:
        raise ValueError(f"expected two convolutions in {block!r}")
    return convolutions[0], convolutions[1]


class FoldedDoubleConvolution(nn.Module):
    """Two 3×3 convolutions (batch norm folded in), each followed by an in-place ReLU.

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H - 4, W - 4)``.
    """

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d):
        super().__init__()
        self.first, self.second = first, second
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.fused:
            return self._fused(x)
        return torch.relu_(self.second(torch.relu_(self.first(x))))

    @torch.jit.unused
    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same as the unfused path in two oneDNN kernels (CPU, channels-last)."""
        x = _conv_relu(x, self.first.weight, self.first.bias)
        return _conv_relu(x, self.second.weight, self.second.bias)


class SplitExpansiveStep(nn.Module):
    """Up-convolution, then copy-and-crop and the first 3×3 convolution as two sums.

    ``first(cat([crop(skip), up]))`` is computed as
    ``skip_convolution(crop(skip)) + up_branch_convolution(up)``: exact, since a
    convolution is linear in its input channels. Maps ``x`` ``(N, 2C, h, w)`` and
    ``skip`` ``(N, C, H1, W1)`` to ``(N, C, 2h - 4, 2w - 4)``.
    """

    def __init__(self, up_convolution: nn.ConvTranspose2d, first: nn.Conv2d, second: nn.Conv2d):
        super().__init__()
        n_skip = first.in_channels - up_convolution.out_channels
        out = first.out_channels
        self.up_convolution = up_convolution
        self.skip_convolution = nn.Conv2d(n_skip, out, first.kernel_size, bias=True)
        self.up_branch_convolution = nn.Conv2d(
            up_convolution.out_channels, out, first.kernel_size, bias=False
        )
        with torch.no_grad():
            # CropAndConcat puts the skip (contracting path) channels first
            self.skip_convolution.weight.copy_(first.weight[:, :n_skip])
            self.skip_convolution.bias.copy_(first.bias)
            self.up_branch_convolution.weight.copy_(first.weight[:, n_skip:])
        self.second = second
        self.fused = False

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        up = self.up_convolution(x)
        dy = (skip.shape[-2] - up.shape[-2]) // 2
        dx = (skip.shape[-1] - up.shape[-1]) // 2
        skip = skip[:, :, dy : dy + up.shape[-2], dx : dx + up.shape[-1]]
        if self.fused:
            return self._fused(up, skip)
        y = self.skip_convolution(skip).add_(self.up_branch_convolution(up))
        return torch.relu_(self.second(torch.relu_(y)))

    @torch.jit.unused
    def _fused(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The same as the unfused path in three oneDNN kernels (CPU, channels-last)."""
        y = torch.ops.mkldnn._convolution_pointwise(
            skip.contiguous(memory_format=torch.channels_last),
            self.skip_convolution.weight,
            self.skip_convolution.bias,
            [0, 0],
            [1, 1],
            [1, 1],
            1,
            "none",
            [],
            "",
        )
        y = torch.ops.mkldnn._convolution_pointwise.binary(
            up,
            y,
            self.up_branch_convolution.weight,
            None,
            [0, 0],
            [1, 1],
            [1, 1],
            1,
            "add",
            1.0,
            "relu",
            [],
            "",
        )
        return _conv_relu(y, self.second.weight, self.second.bias)


class FoldedUNet(nn.Module):
    """A :class:`~napari_unet.method.network.UNet` for prediction only (see the module docstring).

    Build it with :func:`fold_for_inference`. ``forward`` maps ``(N, in_channels, H, W)``
    to logits ``(N, n_classes, H', W')`` exactly as the source network in eval mode; ``halo``
    and ``pooling_factor`` are the source's. It has no
    batch norm and cannot be trained as the source can.
    """

    __jit_unused_properties__ = ["halo", "pooling_factor"]

    def __init__(self, model: UNet):
        super().__init__()
        self.config = model.config
        self.metadata: dict = dict(getattr(model, "metadata", {}) or {})
        self._halo, self._pooling_factor = model.halo, model.pooling_factor
        self.contracting_path = nn.ModuleList(
            FoldedDoubleConvolution(*_folded_pair(block)) for block in model.contracting_path
        )
        self.max_pool = nn.MaxPool2d(2, stride=2)
        self.expansive_path = nn.ModuleList(
            SplitExpansiveStep(
                _copy_transpose(step.up_convolution), *_folded_pair(step.double_convolution)
            )
            for step in model.expansive_path
        )
        self.head = _fold(model.head, None)
        self.requires_grad_(False)
        self.eval()

    # -- shapes (the source network's) --------------------------------------------------
    @property
    def halo(self) -> int:
        """Pixels lost on each side between input and output."""
        return self._halo

    @property
    def pooling_factor(self) -> int:
        """Total down-sampling factor ``2 ** (depth - 1)``."""
        return self._pooling_factor

    def train(self, mode: bool = True):  # noqa: D102
        if mode:
            raise ValueError("a FoldedUNet is for prediction only; train the UNet it came from")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits).

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)``, float, ``(H, W)`` a valid input shape.

        Returns
        -------
        torch.Tensor
            ``(N, n_classes, H', W')`` logits.
        """
        skips: list[torch.Tensor] = []
        level = 0
        for double_convolution in self.contracting_path:
            if level:
                x = self.max_pool(x)
            x = double_convolution(x)
            skips.append(x)
            level += 1
        skips.pop()  # the bottom level feeds the expansive path directly
        for step in self.expansive_path:
            x = step(x, skips.pop())
        return self.head(x)


def _copy_transpose(layer: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    copied = nn.ConvTranspose2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride
    )
    copied.load_state_dict(layer.state_dict())
    return copied


def fold_for_inference(
    model: UNet,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    fused: bool | None = None,
) -> FoldedUNet:
    """The prediction network of ``model``: batch norm folded, no concatenation.

    Parameters
    ----------
    model : UNet
        The trained network (not modified; its batch norm's running statistics are used,
        as in eval mode).
    device : str or torch.device
        Where the folded network goes.
    dtype : torch.dtype
        Its weights' type. The folding itself is done in float64, then rounded once.
    fused : bool, optional
        Run each 3×3 convolution and its ReLU (and, in an expansive step, the sum of the
        two convolutions) as one oneDNN kernel with post-ops
        (``torch.ops.mkldnn._convolution_pointwise``, the kernels ``torch.compile``
        emits on a CPU), which saves a pass over every feature map. ``None``: on a CPU
        with oneDNN in float32 or bfloat16. ``False`` keeps to standard operators (the
        torchscript export, other devices).

    Returns
    -------
    FoldedUNet
        In eval mode, no gradients, channels-last (except on MPS): feed it channels-last
        input for the fastest kernels (oneDNN on a CPU, cuDNN on CUDA). A fused network
        needs channels-last CPU input.

    Raises
    ------
    ValueError
        If ``model`` is not a :class:`~napari_unet.method.network.UNet`.
    """
    if not isinstance(model, UNet):
        raise ValueError(f"model must be a UNet, got {model!r}")
    folded = FoldedUNet(model)
    device = torch.device(device)
    if fused is None:
        fused = (
            device.type == "cpu"
            and dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available()
        )
    for module in folded.modules():
        if isinstance(module, (FoldedDoubleConvolution, SplitExpansiveStep)):
            module.fused = bool(fused)
    layout = torch.contiguous_format if device.type == "mps" else torch.channels_last
    folded = folded.to(device=device, dtype=dtype, memory_format=layout)
    if fused:
        _prepack(folded)
    return folded


def _prepack(folded: FoldedUNet) -> None:
    """Reorder the 3×3 weights once into oneDNN's blocked layout (as ``torch.compile`` does).

    The fused kernels would otherwise reorder them on every call: ~10 % of a 1212² tile's
    time on a 2-core CPU. The reordered weights serve only the fused path.
    """
    with torch.no_grad():
        for module in folded.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    module.weight, [0, 0], [1, 1], [1, 1], 1, None
                )
                module.weight = nn.Parameter(packed, requires_grad=False)
