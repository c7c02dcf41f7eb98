"""The SVHN multi-digit models (Appendix A.5): CNN, ST-CNN Single and ST-CNN Multi.

- CNN, ``layers: a5`` (the default), A.5's list: "conv[48,5,1,2]-max[2]-conv[64,5,1,2]-
  conv[128,5,1,2]-max[2]-conv[160,5,1,2]-conv[192,5,1,2]-max[2]-conv[192,5,1,2]-max[2]-
  conv[192,5,1,2]-fc[3072]-fc[3072]-fc[3072]": seven 5x5 convolutions ("same" padding, ReLU),
  2x2 max pooling after the 1st, 3rd, 5th and 6th, three fully connected layers of 3072 units;
  then five independent 11-way softmax classifiers, one per digit position (one linear layer to
  5 x 11 outputs, split per position: the same as five separate layers). Logits ``(B, 5, 11)``.
  ``layers: eleven_hidden`` is the other reading, Sect. 4.2's "11 hidden layers" (Goodfellow et
  al. 2013's eight convolutions, 48-64-128-160-192-192-192-192, pooling after the 1st, 3rd, 5th
  and 7th, plus the three FC layers).
- Dropout (A.5: "dropout at 0.5 for all layers except the first convolutional layer and
  localisation networks"): on the input of every layer but the first convolution, i.e. after
  every convolution block and every FC layer (the per-layer input dropout of pylearn2, in which
  Goodfellow et al. wrote the baseline); never inside a localisation network.
- ST-CNN Single: an affine spatial transformer on the input (output the input's size) whose
  localisation network is A.5's "conv[32,5,1,2]-max[2]-conv[32,5,1,2]-fc[32]-fc[32]" (one
  pooling).
- ST-CNN Multi: an affine spatial transformer before each of the first four convolutions,
  warping the maps that layer takes (the image, then feature maps, before their dropout), each
  localisation network two fully connected layers of 32 units.

Every regression layer starts at the identity, so at initialisation ST-CNN Multi computes
exactly the CNN's function. ``cfg.width`` scales every layer's width, localisation networks
included (1 = the paper's networks; the ``fast`` schedule uses narrower ones, named so in its
table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import Tensor, nn

from ..checks import above, checked, fraction, one_of
from ..st import SpatialTransformer, build_transform
from .registry import DataSpec, ModelParams, family, register


@family("svhn")
@dataclass
class SvhnParams(ModelParams):
    """The SVHN models' settings (Table 2)."""

    localisation: str | None = checked(one_of("fcn", "cnn"), None)
    width: float = checked(above(0), 1.0)  # multiplier of every layer's width (1: the paper's)
    dropout: float = checked(fraction, 0.5)  # A.5: "dropout at 0.5 for all layers except ..."
    layers: str = checked(one_of("a5", "eleven_hidden"), "a5")

LAYERS = {  # name -> (filters of each convolution, convolutions followed by 2x2 max pooling)
    "a5": ((48, 64, 128, 160, 192, 192, 192), (0, 2, 4, 5)),
    "eleven_hidden": ((48, 64, 128, 160, 192, 192, 192, 192), (0, 2, 4, 6)),
}
FC = (3072, 3072, 3072)
LOC = 32  # units of each localisation layer


def scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


class SequenceCNN(nn.Module):
    """The CNN, with optional spatial transformers before some of its convolutions.

    Args:
        spec: input shape ``(C, H, W)``, classes per position, positions.
        width: multiplier of every convolution and FC width.
        dropout: dropout probability on the input of every layer but the first convolution.
        layers: ``a5`` (A.5's seven convolutions) or ``eleven_hidden`` (eight).
        make_st: ``make_st(shape)`` -> the transformer to put before a convolution whose input
            has ``shape`` ``(C, H, W)``, for the convolutions listed in ``st_before``.
        st_before: indices of the convolutions preceded by a transformer.
    """

    def __init__(self, spec: DataSpec, width: float = 1.0, dropout: float = 0.5,
                 make_st: Callable[[tuple[int, int, int]], SpatialTransformer] | None = None,
                 st_before: tuple[int, ...] = (), layers: str = "a5"):  # fmt: skip
        super().__init__()
        c, h, w = spec.shape
        self.positions, self.classes = spec.positions, spec.num_classes
        self.convs = nn.ModuleList()
        self.transformers = nn.ModuleDict()
        conv, pool_after = LAYERS[layers]
        for i, filters in enumerate(conv):
            if i in st_before:
                self.transformers[str(i)] = make_st((c, h, w))
            out = scaled(filters, width)
            block = [nn.Dropout(dropout)] if i else []  # not on the first convolution's input
            block += [nn.Conv2d(c, out, 5, padding=2), nn.ReLU()]
            if i in pool_after:
                block.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            self.convs.append(nn.Sequential(*block))
            c = out
        fc, features = [nn.Flatten()], c * h * w
        for units in FC:
            fc += [nn.Dropout(dropout), nn.Linear(features, scaled(units, width)), nn.ReLU()]
            features = scaled(units, width)
        self.fc = nn.Sequential(*fc, nn.Dropout(dropout))  # (the classifiers' input)
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
        nn.Conv2d(units, units, 5, padding=2), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(units * (h // 2) * (w // 2), units), nn.ReLU(),
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


@register("svhn_cnn", SvhnParams, task="sequence")
def svhn_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout, layers=cfg.layers)


@register("svhn_st_single", SvhnParams, task="sequence")
def svhn_st_single(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout, st_maker(cfg, cnn_localisation), (0,),
                       cfg.layers)  # fmt: skip


@register("svhn_st_multi", SvhnParams, task="sequence")
def svhn_st_multi(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return SequenceCNN(spec, cfg.width, cfg.dropout, st_maker(cfg, fc_localisation),
                       (0, 1, 2, 3), cfg.layers)  # fmt: skip
