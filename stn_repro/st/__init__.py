"""Spatial transformer layers: parameterisations, sampling and the module.

The library knows nothing of datasets or experiments. Coordinate convention: see
:mod:`stn_repro.st.transforms`.
"""

from .module import SpatialTransformer
from .sampler import sample
from .transforms import (
    ALIGN_CORNERS,
    TRANSFORMS,
    Affine,
    Affine3D,
    Attention,
    BoundedAttention,
    Projective,
    Rotation,
    ThinPlateSpline,
    Transform,
    Translation,
    build_transform,
    compose_affine,
)

__all__ = [
    "ALIGN_CORNERS",
    "TRANSFORMS",
    "Affine",
    "Affine3D",
    "Attention",
    "BoundedAttention",
    "Projective",
    "Rotation",
    "SpatialTransformer",
    "ThinPlateSpline",
    "Transform",
    "Translation",
    "build_transform",
    "compose_affine",
    "sample",
]
