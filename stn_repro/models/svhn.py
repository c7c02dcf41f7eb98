"""The SVHN multi-digit models (Appendix A.5): CNN, ST-CNN Single and ST-CNN Multi.

- CNN (after Goodfellow et al. 2013, 11 hidden layers): eight 5x5 convolutions ("same" padding,
  ReLU) of 48, 64, 128, 160, 192, 192, 192, 192 filters with 2x2 max pooling after the 1st,
  3rd, 5th and 7th; three fully connected layers of 3072 units (ReLU, dropout); then five
  independent 11-way softmax classifiers, one per digit position (one linear layer to 5 x 11
  outputs, split per position: the same as five separate layers). Logits ``(B, 5, 11)``.
- ST-CNN Single: an affine spatial transformer on the input (output the input's size) whose
  localisation network is a four-layer CNN: conv 5x5 (32), max-pool 2, conv 5x5 (32),
  max-pool 2, FC 32, FC 32.
- ST-CNN Multi: an affine spatial transformer before each of the first four convolutions,
  warping the maps that layer takes (the image, then feature maps), each localisation network
  two fully connected layers of 32 units.

Every regression layer starts at the identity, so at initialisation ST-CNN Multi computes
exactly the CNN's function. ``cfg.width`` scales every layer's width, localisation networks
included (1 = the paper's networks; the ``fast`` schedule uses narrower ones, named so in its
table).
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig
from torch import Tensor, nn

from ..st import SpatialTransformer, build_transform
from . import DataSpec, register

CONV = (48, 64, 128, 160, 192, 192, 192, 192)
POOL_AFTER = (0, 2, 4, 6)  # convolutions followed by 2x2 max pooling
FC = (3072, 3072, 3072)
LOC = 32  # units of each localisation layer


def scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


class SequenceCNN(nn.Module):
    """The CNN, with optional spatial transformers before some of its convolutions.

    Args:
        spec: input shape ``(C, H, W)``, classes per position, positions.
        width: multiplier of every convolution and FC width.
        dropout: dropout probability after each FC layer.
        make_st: ``make_st(shape)`` -> the transformer to put before a convolution whose input
            has ``shape`` ``(C, H, W)``, for the convolutions listed in ``st_before``.
        st_before: indices (0-7) of the convolutions preceded by a transformer.
    """

    def __init__(self, spec: DataSpec, width: float = 1.0, dropout: float = 0.5,
                 make_st: Callable[[tuple[int, int, int]], SpatialTransformer] | None = None,
                 st_before: tuple[int, ...] = ()):  # fmt: skip
        super().__init__()
        c, h, w = spec.shape
        self.positions, self.classes = spec.positions, spec.num_classes
        self.convs = nn.ModuleList()
        self.transformers = nn.ModuleDict()
        for i, filters in enumerate(CONV):
            if i in st_before:
                self.transformers[str(i)] = make_st((c, h, w))
            out = scaled(filters, width)
            block = [nn.Conv2d(c, out, 5, padding=2), nn.ReLU()]
            if i in POOL_AFTER:
                block.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            self.convs.append(nn.Sequential(*block))
            c = out
        layers, features = [nn.Flatten()], c * h * w
        for units in FC:
            layers += [nn.Linear(features, scaled(units, width)), nn.ReLU(), nn.Dropout(dropout)]
            features = scaled(units, width)
        self.fc = nn.Sequential(*layers)
        self.heads = nn.Linear(features, spec.positions * spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x (B, C, H, W) -> logits (B, positions, classes)
        for i, conv in enumerate(self.convs):
            if str(i) in self.transformers:
                x, _ = self.transformers[str(i)](x)  # same shape as x
            x = conv(x)
        return self.heads(self.fc(x)).view(-1, self.positions, self.classes)


def cnn_localisation(shape: tuple[int, int, int], units: int) -> tuple[nn.Module, int]:
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, units, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(units, units, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(units * (h // 4) * (w // 4), units), nn.ReLU(),
        nn.Linear(units, units), nn.ReLU(),
    ), units  # fmt: skip


def fc_localisation(shape: tuple[int, int, int], units: int) -> tuple[nn.Module, int]:
    c, h, w = shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, units), nn.ReLU(),
        nn.Linear(units, units), nn.ReLU(),
    ), units  # fmt: skip


def st_maker(cfg: DictConfig, localisation) -> Callable[[tuple[int, int, int]], SpatialTransformer]:
    """A factory of spatial transformers of ``cfg.transform`` keeping their input's size, their
    localisation layers ``LOC`` units wide times ``cfg.width``."""

    def make(shape: tuple[int, int, int]) -> SpatialTransformer:
        args = {k: v for k, v in cfg.transform.items() if k != "name"}
        net, features = localisation(shape, scaled(LOC, cfg.width))
        return SpatialTransformer(build_transform(cfg.transform.name, **args), shape[1:], net,
                                  features)  # fmt: skip

    return make


@register("svhn_cnn", task="sequence")
def svhn_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout)


@register("svhn_st_single", task="sequence")
def svhn_st_single(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout, st_maker(cfg, cnn_localisation), (0,))


@register("svhn_st_multi", task="sequence")
def svhn_st_multi(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout, st_maker(cfg, fc_localisation),
                       (0, 1, 2, 3))  # fmt: skip
