"""Models on 3D volumes (Appendix A.3): a 3D spatial transformer that projects to 2D, and its
baseline, the same classifier on a fixed projection.

- ``st3d_cnn``: 3D localisation network (max-pool 2, conv 5^3 x8, max-pool 2, conv 5^3 x8,
  max-pool 2, FC 32) regressing a 3D affine transform; trilinear sampling of an output volume
  of the input's size, summed over depth into a 2D map (W = sum over depth, A.3); average
  pooling by ``spec.st_pool``; the CNN head of Table 1.
- ``proj_cnn``: the same pipeline with the transformer fixed at the identity (so the volume is
  summed along its depth axis), the head's width solved to the same parameter count.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from ..errors import UserError
from ..st import Affine3D, SpatialTransformer
from .mnist import LOCALISATIONS, MnistParams, build_classifier, make_st, no_transform
from .registry import DataSpec, register


def volume_localisation(shape) -> tuple[nn.Module, int]:
    c, *sides = shape
    out = [(((n // 2 - 4) // 2) - 4) // 2 for n in sides]  # after the pools and valid convs
    if min(out) < 1:
        raise UserError(f"the 3D localisation network needs volumes of at least 44^3, got {sides}")
    return nn.Sequential(
        nn.MaxPool3d(2),
        nn.Conv3d(c, 8, 5), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(8, 8, 5), nn.ReLU(), nn.MaxPool3d(2),
        nn.Flatten(),
        nn.Linear(8 * out[0] * out[1] * out[2], 32), nn.ReLU(),
    ), 32  # fmt: skip


LOCALISATIONS["cnn3d"] = volume_localisation


@register("st3d_cnn", MnistParams)
def st3d_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    return build_classifier(cfg, spec, make_st(cfg, spec))


@register("proj_cnn", MnistParams)
def proj_cnn(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    no_transform(cfg)
    identity = Affine3D().identity_params()
    st = SpatialTransformer(Affine3D(), spec.shape[1:], fixed_theta=identity, flatten_depth=True)
    return build_classifier(cfg, spec, st)
