"""The CUB-200-2011 models (Sect. 4.3, Appendix A.6): an ImageNet-pretrained Inception
baseline, and N parallel attention transformers, each feeding its own Inception.

Backbone: torchvision's GoogLeNet (Inception v1; ``IMAGENET1K_V1`` weights), the closest to the
paper's Inception with batch normalisation that torchvision has (docs/reproduction-notes.md,
"CUB"). ``trunk`` is its layers up to ``inception5b``: ``(B, 3, 224, 224)`` ->
``(B, 1024, 7, 7)``; a part network is the trunk plus global average pooling: 1024-D.
Inputs arrive in [0, 1] and are mapped to ``2x - 1``, the scaling the pretrained weights
expect (torchvision's ``transform_input`` maps ImageNet-normalised inputs to the same).

- CNN: one part network on the whole image, dropout, a 200-way linear classifier.
- N x ST-CNN (N translation windows, the attention of A.6 with a fixed scale): a localisation
  network (its own trunk, on the image average-pooled to
  ``part_size`` when the image is larger, e.g. 448 -> 224; then a 1x1 convolution to 128 maps
  and a fully connected layer of 128, each with ReLU) regresses N translations of a window of
  fixed scale 0.5 (``st.Translation``). Each transformer samples a ``part_size`` crop, which
  its own part network encodes; the N vectors are concatenated, then dropout and a 200-way
  classifier. The regressor starts tiling the image: 4 transformers on its four quadrants, 2
  on its left and right halves' centres (vertically centred).
"""

from __future__ import annotations

import functools
import pickle
import socket
from dataclasses import dataclass
from http.client import HTTPException

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ..checks import at_least, checked, fraction, one_of
from ..errors import UserError
from ..st import SpatialTransformer, build_transform
from .registry import DataSpec, ModelParams, family, register


@family("cub")
@dataclass
class CubParams(ModelParams):
    """The CUB models' settings (Table 3)."""

    localisation: str | None = checked(one_of("inception"), None)
    pretrained: bool = True  # ImageNet weights for every Inception (false: tests, offline runs)
    part_size: int = checked(at_least(32), 224)  # each transformer's crop
    dropout: float = checked(fraction, 0.7)  # A.6: "dropout of 0.7 was used before the ..."

TRUNK = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
         "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
         "maxpool4", "inception5a", "inception5b")  # fmt: skip
FEATURES = 1024  # channels of the trunk's output
LOC_MAPS, LOC_UNITS = 128, 128
START = {
    1: [[0.0, 0.0]],
    2: [[-0.5, 0.0], [0.5, 0.0]],
    4: [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]],
}
"""Initial translations ``(t_x, t_y)`` per number of transformers (normalised coordinates,
-1 and 1 the image's outer edges): with scale 0.5 the 4 windows are the image's quadrants."""
DOWNLOAD_TIMEOUT_S = 60


@functools.lru_cache(maxsize=1)
def googlenet_weights() -> dict:
    """The ImageNet GoogLeNet weights through torchvision's weights API (cached by torch.hub);
    one sentence when they cannot be fetched."""
    from torchvision.models import GoogLeNet_Weights

    weights = GoogLeNet_Weights.IMAGENET1K_V1
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled connection fails, never hangs
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, HTTPException, EOFError, pickle.UnpicklingError) as err:
        # URLError is an OSError; a bad hash a RuntimeError; a cut or corrupt file the rest
        raise UserError(
            f"the ImageNet GoogLeNet weights could not be fetched ({type(err).__name__}): put "
            f"{weights.url.rsplit('/', 1)[-1]} from {weights.url} into "
            f"{torch.hub.get_dir()}/checkpoints, or train from scratch with model.pretrained=false"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def inception_trunk(pretrained: bool) -> nn.Sequential:
    """GoogLeNet up to ``inception5b`` (``(B, 3, H, W)`` -> ``(B, 1024, H/32, W/32)``),
    ImageNet-initialised or random."""
    from torchvision.models import GoogLeNet

    net = GoogLeNet(num_classes=1000, aux_logits=pretrained, transform_input=False,
                    init_weights=not pretrained)  # fmt: skip
    if pretrained:
        net.load_state_dict(googlenet_weights())
    return nn.Sequential(*(getattr(net, name) for name in TRUNK))


def part_network(pretrained: bool) -> nn.Sequential:
    """The trunk, then global average pooling: ``(B, 3, H, W)`` -> ``(B, 1024)``."""
    return nn.Sequential(inception_trunk(pretrained), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class BirdNet(nn.Module):
    """The CNN (``num_transformers=0``) or the N x ST-CNN, for inputs ``(B, 3, S, S)``.

    Args:
        spec: input shape and classes.
        num_transformers: 0 (the CNN), or N parallel attention transformers (1, 2 or 4).
        transform: the transformers' transform config (``translation`` with scale 0.5).
        part_size: side of each transformer's crop and of the localisation network's input.
        pretrained: ImageNet weights for every Inception.
        dropout: before the classifier.
    """

    def __init__(self, spec: DataSpec, num_transformers: int, part_size: int, pretrained: bool,
                 dropout: float, transform: DictConfig | None = None):  # fmt: skip
        super().__init__()
        side = spec.shape[-1]
        n = num_transformers
        self.st = None
        if n:
            if n not in START:
                raise UserError(f"model.num_transformers={n}: the CUB models tile with "
                                f"{', '.join(map(str, sorted(START)))} transformers")  # fmt: skip
            if side % part_size or part_size % 32:
                raise UserError(f"model.part_size={part_size}: must be a multiple of 32 that "
                                f"divides the input side {side}")  # fmt: skip
            trunk_side = part_size // 32  # the trunk's output side
            localisation = nn.Sequential(
                nn.AvgPool2d(side // part_size) if side > part_size else nn.Identity(),
                inception_trunk(pretrained),
                nn.Conv2d(FEATURES, LOC_MAPS, 1), nn.ReLU(), nn.Flatten(),
                nn.Linear(LOC_MAPS * trunk_side**2, LOC_UNITS), nn.ReLU(),
            )  # fmt: skip
            args = {k: v for k, v in transform.items() if k != "name"}
            self.st = SpatialTransformer(
                build_transform(transform.name, **args), (part_size, part_size),
                localisation, LOC_UNITS, num_transformers=n, initial_theta=torch.tensor(START[n]),
            )  # fmt: skip
        self.parts = nn.ModuleList(part_network(pretrained) for _ in range(max(n, 1)))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(FEATURES * len(self.parts), spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x (B, 3, S, S) in [0, 1] -> logits (B, classes)
        x = 2 * x - 1
        if self.st is None:
            crops = [x]
        else:
            warped, _ = self.st(x)  # (B, N, 3, part_size, part_size)
            crops = warped.unbind(1)
        features = torch.cat([part(crop) for part, crop in zip(self.parts, crops, strict=True)], 1)
        return self.classifier(self.dropout(features))


@register("cub_cnn", CubParams)
def cub_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return BirdNet(spec, 0, cfg.part_size, cfg.pretrained, cfg.dropout)


@register("cub_st", CubParams)
def cub_st(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return BirdNet(spec, cfg.num_transformers, cfg.part_size, cfg.pretrained, cfg.dropout,
                   cfg.transform)  # fmt: skip
