"""The GTSRB networks: the IDSIA-style CNN (Ciresan et al., 2012) and its versions with one and
two affine spatial transformers, in the layer recipe of the 99.61% result (Moodstocks'
gtsrb.torch, ``idsia_net.lua``; docs/reproduction-notes.md, "GTSRB").

- CNN, on 48x48 RGB: three blocks ``conv k x k (padding 2) -> ReLU -> max-pool 2 -> local
  contrast normalisation (9x9 box)`` of 150 7x7, 200 4x4 and 300 4x4 filters (48 -> 23 -> 12
  -> 6 pixels), then FC 350 (ReLU) and a 43-way classifier.
- CNN + 1 ST: an affine transformer on the input. Its localisation network: max-pool 2, two
  blocks ``conv 5x5 (padding 2) -> ReLU -> max-pool 2`` of 200 and 300 filters, FC 200 (ReLU).
- CNN + 2 ST: also a second one on the conv2 block's output (200 maps of 12x12), before conv3;
  its localisation network the same with 150, 150 filters and FC 150.

Every regression layer starts at the identity, so at initialisation the ST models compute the
CNN's function. ``cfg.width`` scales every layer's width, localisation networks included.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import Tensor, nn

from ..checks import above, checked, one_of
from ..contrast import LocalContrastNorm, box_kernel
from ..st import SpatialTransformer, build_transform
from .registry import DataSpec, ModelParams, family, register
from .svhn import scaled


@family("gtsrb")
@dataclass
class GtsrbParams(ModelParams):
    """The GTSRB networks' settings."""

    localisation: str | None = checked(one_of("cnn"), None)
    width: float = checked(above(0), 1.0)  # multiplier of every layer's width (1: the reference's)

CONV = ((150, 7), (200, 4), (300, 4))  # (filters, kernel) of the three blocks
PADDING = 2
FC = 350
CONTRAST_KERNEL = 9  # the 9x9 box of Torch7's default (see the notes)
LOC_INPUT = (200, 300, 200)  # localisation of the input transformer: conv, conv, FC
LOC_CONV2 = (150, 150, 150)  # localisation of the transformer on conv2's output


def block(cin: int, cout: int, kernel: int, contrast: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, padding=PADDING), nn.ReLU(), nn.MaxPool2d(2)]
    if contrast:
        layers.append(LocalContrastNorm(box_kernel(CONTRAST_KERNEL)))
    return nn.Sequential(*layers)


def block_side(side: int, kernel: int) -> int:
    """Output side of a block on a map of ``side`` pixels."""
    return (side + 2 * PADDING - kernel + 1) // 2


def localisation(shape: tuple[int, int, int], widths: tuple[int, int, int]) -> nn.Sequential:
    """Max-pool 2, two 5x5 blocks (no contrast normalisation), FC (ReLU)."""
    c, h, w = shape
    conv1, conv2, units = widths
    h, w = block_side(block_side(h // 2, 5), 5), block_side(block_side(w // 2, 5), 5)
    return nn.Sequential(
        nn.MaxPool2d(2), block(c, conv1, 5, False), block(conv1, conv2, 5, False),
        nn.Flatten(), nn.Linear(conv2 * h * w, units), nn.ReLU(),
    )  # fmt: skip


class SignNet(nn.Module):
    """The CNN, with affine transformers before some of its blocks.

    Args:
        spec: input shape ``(C, H, W)`` and classes.
        transform: the transformers' transform config (``{"name": "affine"}``).
        st_before: ``{block index: localisation widths}`` (0: on the input; 2: on conv2's
            output).
        width: multiplier of every layer's width.
    """

    def __init__(
        self,
        spec: DataSpec,
        transform: DictConfig | None = None,
        st_before: dict[int, tuple[int, int, int]] | None = None,
        width: float = 1.0,
    ):
        super().__init__()
        c, h, w = spec.shape
        self.blocks = nn.ModuleList()
        self.transformers = nn.ModuleDict()
        for i, (filters, kernel) in enumerate(CONV):
            if i in (st_before or {}):
                widths = tuple(scaled(n, width) for n in st_before[i])
                args = {k: v for k, v in transform.items() if k != "name"}
                self.transformers[str(i)] = SpatialTransformer(
                    build_transform(transform.name, **args), (h, w),
                    localisation((c, h, w), widths), widths[-1],
                )  # fmt: skip
            out = scaled(filters, width)
            self.blocks.append(block(c, out, kernel, contrast=True))
            c, h, w = out, block_side(h, kernel), block_side(w, kernel)
        units = scaled(FC, width)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, units), nn.ReLU())
        self.classifier = nn.Linear(units, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x (B, C, H, W) -> logits (B, classes)
        for i, conv in enumerate(self.blocks):
            if str(i) in self.transformers:
                x, _ = self.transformers[str(i)](x)  # same shape as x
            x = conv(x)
        return self.classifier(self.fc(x))


@register("gtsrb_cnn", GtsrbParams)
def gtsrb_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SignNet(spec, width=cfg.width)


@register("gtsrb_st1", GtsrbParams)
def gtsrb_st1(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SignNet(spec, cfg.transform, {0: LOC_INPUT}, cfg.width)


@register("gtsrb_st2", GtsrbParams)
def gtsrb_st2(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SignNet(spec, cfg.transform, {0: LOC_INPUT, 2: LOC_CONV2}, cfg.width)
