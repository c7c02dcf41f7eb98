"""The MNIST models: FCN, CNN, ST-FCN and ST-CNN (Appendix A.4), 2xST-FCN (A.1).

Classifier heads (``width`` solved so a model has about ``cfg.target_params`` parameters):
- FCN: flatten, two hidden fully connected layers of ``width`` units, classifier.
- CNN: conv 9x9 (``width`` filters), max-pool 2, conv 7x7 (``width`` filters), max-pool 2,
  classifier. Valid convolutions where the input allows them, else "same" padding (see
  docs/reproduction-notes.md).
``dropout`` (off by default, as A.4's "no dropout") drops the FCN's hidden units and the CNN's
last pooled maps in training.
Spatial transformers sit at the input; their output has the input's size and is average-pooled
by ``spec.st_pool`` before the head. Localisation networks:
- ST-FCN: three fully connected hidden layers of 32 units.
- ST-CNN: max-pool 2 (the 2x downsampled input), conv 5x5 (20), max-pool 2, conv 5x5 (20),
  fully connected 20 units.
All non-linearities are ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ..checks import at_least, checked, fraction, one_of
from ..errors import UserError
from ..st import SpatialTransformer, build_transform
from .registry import DataSpec, ModelParams, count_params, family, register


@family("mnist")
@dataclass
class MnistParams(ModelParams):
    """The MNIST models' settings (Tables 1 and 4, and the 3D models of ``volume``)."""

    head: str = checked(one_of("fcn", "cnn"))  # the classifier head
    localisation: str | None = checked(one_of("fcn", "cnn", "cnn3d"), None)
    target_params: int = checked(at_least(10_000), 400_000)  # A.4: "around 400k"
    # several transformers: each its own localisation network (True) or one shared (False)
    independent_localisation: bool | None = None
    # std of the regression layer's initial weights (None: zeros, every theta starts at the
    # identity); breaks the symmetry between parallel transformers
    regressor_init_std: float | None = checked(at_least(0), None)
    # dropout on the hidden units the head's fully connected layers read (FCN: both hidden
    # layers; CNN: the last pooled maps), never in the localisation network. A.4 trains with
    # "no dropout": None (the default) is the paper's; a recipe lever against overfitting.
    dropout: float | None = checked(fraction, None)


def conv_out(size: int, kernel: int, padding: int) -> int:
    return size + 2 * padding - kernel + 1


def cnn_padding(size: int) -> tuple[int, int]:
    """Paddings of the two convolutions: valid when the map stays >= 2 pixels, else "same"."""
    valid = conv_out(conv_out(size, 9, 0) // 2, 7, 0) // 2
    return (0, 0) if valid >= 2 else (4, 3)


def dropped(p: float) -> list[nn.Module]:
    """A dropout layer of probability ``p``, or none for 0 (so the module indices, and the
    checkpoints of models trained without it, stay as they were)."""
    return [nn.Dropout(p)] if p else []


def fcn_head(shape, width: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    c, h, w = shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, width), nn.ReLU(), *dropped(dropout),
        nn.Linear(width, width), nn.ReLU(), *dropped(dropout),
        nn.Linear(width, num_classes),
    )  # fmt: skip


def cnn_head(shape, width: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    c, h, w = shape
    p1, p2 = cnn_padding(min(h, w))
    oh = conv_out(conv_out(h, 9, p1) // 2, 7, p2) // 2
    ow = conv_out(conv_out(w, 9, p1) // 2, 7, p2) // 2
    return nn.Sequential(
        nn.Conv2d(c, width, 9, padding=p1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 7, padding=p2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), *dropped(dropout),
        nn.Linear(width * oh * ow, num_classes),
    )  # fmt: skip


def fcn_localisation(shape) -> tuple[nn.Module, int]:
    c, h, w = shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, 32), nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(),
    ), 32  # fmt: skip


def cnn_localisation(shape) -> tuple[nn.Module, int]:
    c, h, w = shape
    oh = conv_out(conv_out(h // 2, 5, 0) // 2, 5, 0)
    ow = conv_out(conv_out(w // 2, 5, 0) // 2, 5, 0)
    if min(oh, ow) < 1:
        raise UserError(
            f"the ST-CNN localisation network needs inputs of at least 28x28, got {h}x{w}"
        )
    return nn.Sequential(
        nn.MaxPool2d(2),
        nn.Conv2d(c, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 20, 5), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(20 * oh * ow, 20), nn.ReLU(),
    ), 20  # fmt: skip


HEADS = {"fcn": fcn_head, "cnn": cnn_head}
LOCALISATIONS = {"fcn": fcn_localisation, "cnn": cnn_localisation}


class Classifier(nn.Module):
    """Optional spatial transformer, optional average pooling, then a classifier head."""

    def __init__(self, head: nn.Module, st: SpatialTransformer | None = None, pool: int = 1):
        super().__init__()
        self.st = st
        self.pool = nn.AvgPool2d(pool) if st is not None and pool > 1 else nn.Identity()
        self.head = head

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, H, W) -> logits (B, classes)
        if self.st is not None:
            x, _ = self.st(x)  # (B, C, H, W), or (B, N, C, H, W) for N parallel transformers
            x = x.flatten(1, x.dim() - 3)  # N outputs concatenated on channels: (B, N * C, H, W)
        return self.head(self.pool(x))


def make_st(cfg: DictConfig, spec: DataSpec) -> SpatialTransformer:
    if "transform" not in cfg or cfg.transform is None:
        raise UserError(
            f"model {cfg.name} needs a transform: add model/transform=affine|projective|tps"
        )
    kwargs = OmegaConf.to_container(cfg.transform, resolve=True)
    transform = build_transform(kwargs.pop("name"), **kwargs)
    dims = len(spec.shape) - 1
    if transform.dim != dims:
        fits = "affine3d" if dims == 3 else "affine, projective or tps"
        raise UserError(
            f"transform {cfg.transform.name} is {transform.dim}D but the data are {dims}D "
            f"{'volumes' if dims == 3 else 'images'}; choose model/transform={fits}"
        )
    if cfg.localisation not in LOCALISATIONS:
        raise UserError(f"unknown localisation {cfg.localisation!r}; use {sorted(LOCALISATIONS)}")
    n = int(cfg.get("num_transformers", 1))
    if cfg.get("independent_localisation") and n > 1:  # one whole network per transformer
        nets = [LOCALISATIONS[cfg.localisation](spec.shape) for _ in range(n)]
        localisation, features = nn.ModuleList([net for net, _ in nets]), nets[0][1]
    else:
        localisation, features = LOCALISATIONS[cfg.localisation](spec.shape)
    return SpatialTransformer(
        transform, spec.shape[1:], localisation, features, n, flatten_depth=dims == 3,
        regressor_init_std=cfg.get("regressor_init_std") or 0.0,
    )


def solve_width(make, target: int, low: int = 1, high: int = 8192) -> nn.Module:
    """The model from ``make(width)`` whose parameter count is closest to ``target``."""

    def count(width: int) -> int:
        with torch.device("meta"):  # counts without allocating or initialising weights
            return count_params(make(width))

    while high - low > 1:  # counts grow with the width: bisect
        mid = (low + high) // 2
        if count(mid) <= target:
            low = mid
        else:
            high = mid
    return make(min((low, high), key=lambda w: abs(count(w) - target)))


def build_classifier(
    cfg: DictConfig, spec: DataSpec, st: SpatialTransformer | None = None
) -> nn.Module:
    """``st`` (if any), average pooling by ``spec.st_pool`` after it, then the head
    ``cfg.head`` with its width solved for ``cfg.target_params`` in all."""
    pool = spec.st_pool if st is not None else 1
    c, *_, h, w = spec.shape  # images (C, H, W); volumes (C, D, H, W) come out of st as images
    if st is None and len(spec.shape) != 3:
        raise UserError(
            f"model {cfg.name} takes images but the data are volumes; use model=proj_cnn or "
            "model=st3d_cnn"
        )
    head_shape = (c * (st.num_transformers if st else 1), h // pool, w // pool)
    budget = int(cfg.target_params) - (count_params(st) if st is not None else 0)

    def make(width: int) -> nn.Module:
        return HEADS[cfg.head](head_shape, width, spec.num_classes, cfg.get("dropout") or 0.0)

    return Classifier(solve_width(make, budget), st, pool)


def no_transform(cfg: DictConfig) -> None:
    if cfg.get("transform") is not None:
        raise UserError(
            f"model {cfg.name} has no spatial transformer, so model/transform does not apply; "
            f"use model=st_{cfg.name}"
        )


@register("fcn", MnistParams)
def fcn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    no_transform(cfg)
    return build_classifier(cfg, spec)


@register("cnn", MnistParams)
def cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    no_transform(cfg)
    return build_classifier(cfg, spec)


@register("st_fcn", MnistParams)
def st_fcn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return build_classifier(cfg, spec, make_st(cfg, spec))


@register("st2_fcn", MnistParams)
def st2_fcn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """N (default 2) transformers in parallel on one localisation network, their outputs
    concatenated on channels for the FCN (MNIST addition, A.1)."""
    return build_classifier(cfg, spec, make_st(cfg, spec))


@register("st_cnn", MnistParams)
def st_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return build_classifier(cfg, spec, make_st(cfg, spec))
