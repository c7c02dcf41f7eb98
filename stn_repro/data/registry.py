"""The dataset generators' registry: everything the suite knows of a ``dataset.generator``, in
one record registered beside its code (``generators``, ``svhn``, ``gtsrb``, ``cub``).

A generator's ``params`` dataclass types ``dataset.params`` (checked after composition, with
``stn_repro.checks``); ``source`` names what it reads (``paths.<source>_dir``); ``classes`` the
classes its labels take; ``st_pool`` the pooling after a transformer its images call for.
MNIST generators also give their function (``make``), the columns of the parameter array they
keep per image, and, where the pose recovery applies, its measures and the distortion ``D``
(canvas -> upright digit, ``(N, 3, 3)`` per input channel) rebuilt from those parameters
(``stn_repro.report.pose``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Generator:
    params: type  # its dataset.params dataclass
    source: str = "mnist"  # what it reads: paths.<source>_dir
    classes: int = 10  # the classes its labels take
    # average pooling after a spatial transformer, before the classifier (``dataset.st_pool``
    # unless set); A.4: "for TC and RTS datasets ... downsample ... by a factor of 2"
    st_pool: int = 1
    # MNIST generators: (digits, labels, rng, **params) -> images, labels, parameters (N, P)
    make: Callable | None = None
    uses_pool: bool = False  # also draws other digits from the whole split (``pool``)
    param_names: tuple[str, ...] = ()  # the columns of the parameter array it keeps
    measures: tuple[str, ...] = ()  # the pose measures reported for it (none: no pose table)
    # (parameters (N, P) float64, the dataset.params dict) -> [D (N, 3, 3) per input channel]
    distortion: Callable | None = None


GENERATORS: dict[str, Generator] = {}
"""Every dataset generator (``dataset.generator``), in registration order (MNIST first)."""


def register_generator(name: str, generator: Generator) -> None:
    GENERATORS[name] = generator


def sources() -> list[str]:
    """The sources the generators read, in registration order (mnist first)."""
    return list(dict.fromkeys(generator.source for generator in GENERATORS.values()))
