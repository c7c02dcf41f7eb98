"""Table 4's two parallel transformers: parameter budgets and independent localisation
networks (each transformer a whole module of its own)."""

from __future__ import annotations

import pytest
import torch

from stn_repro.experiment import compose_run
from stn_repro.models import DataSpec, build_model, count_params
from stn_repro.st.inspect import transformers

ADDITION = DataSpec((2, 42, 42), 19, 1, 1)
ROWS = [["model=fcn"], ["model=cnn"]] + [
    [f"model={m}", f"model/transform={t}", *extra]
    for m, extra in [("st_fcn", []), ("st2_fcn", []),
                     ("st2_fcn", ["model.independent_localisation=false"])]  # fmt: skip
    for t in ("affine", "projective", "tps")
]


@pytest.mark.parametrize("overrides", ROWS, ids=[" ".join(r) for r in ROWS])
def test_every_row_has_about_400k_parameters(compose_cfg, overrides):
    cfg = compose_cfg("experiment=table4_addition", *overrides)
    assert abs(count_params(build_model(cfg.model, ADDITION)) - 400_000) <= 4_000


def test_independent_localisation_networks_share_nothing(compose_cfg):
    cfg = compose_cfg("experiment=table4_addition", "model=st2_fcn", "model/transform=affine")
    [st] = transformers(build_model(cfg.model, ADDITION))
    first, second = (list(net.parameters()) + list(reg.parameters())
                     for net, reg in zip(st.localisation, st.regressors, strict=True))  # fmt: skip
    assert not {p.data_ptr() for p in first} & {p.data_ptr() for p in second}
    assert {id(p) for p in st.localisation_parameters()} == {id(p) for p in first + second}
    # Both start at the identity; changing one network moves only its own transformer's theta.
    x = torch.rand(4, 2, 42, 42)
    _, theta = st(x)
    torch.testing.assert_close(theta, st.transform.identity_params().expand(4, 2, 6))
    with torch.no_grad():
        st.regressors[1].weight.normal_(0, 0.1)
    _, moved = st(x)
    torch.testing.assert_close(moved[:, 0], theta[:, 0])
    assert not torch.allclose(moved[:, 1], theta[:, 1])
    # Gradients of transformer 1's theta reach only network 1.
    _, theta = st(x)
    theta[:, 0].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in second)
    assert any(p.grad is not None and p.grad.any() for p in first)


def test_random_regressor_start_breaks_the_symmetry(compose_cfg):
    """Both transformers of a shared network start as exact twins (same theta for
    every input); ``model.regressor_init_std`` makes their thetas differ from the first step."""
    x = torch.rand(4, 2, 42, 42)
    thetas = {}
    for std in ("null", "0.05"):
        cfg = compose_cfg("experiment=table4_addition", "model=st2_fcn", "model/transform=affine",
                          "model.independent_localisation=false",
                          f"model.regressor_init_std={std}")  # fmt: skip
        [st] = transformers(build_model(cfg.model, ADDITION))
        _, thetas[std] = st(x)
    twins = thetas["null"]
    torch.testing.assert_close(twins[:, 0], twins[:, 1])
    torch.testing.assert_close(twins, st.transform.identity_params().expand(4, 2, 6))
    broken = thetas["0.05"]
    assert not torch.allclose(broken[:, 0], broken[:, 1], atol=1e-3)
    assert not torch.allclose(broken[0], broken[1], atol=1e-3)  # depends on the input


def test_command_line_beats_the_experiments_schedule_overrides(compose_cfg):
    """table4_addition sets 12,000 iterations for `fast`; an explicit override still wins."""
    cfg = compose_cfg("experiment=table4_addition", "schedule=fast")
    row = cfg.experiment.rows[0]
    base = ["experiment=table4_addition", "schedule=fast"]
    assert compose_run(base, row, 1).schedule.iterations == 12000
    shorter = compose_run([*base, "schedule.iterations=6000"], row, 1)
    assert shorter.schedule.iterations == 6000
