"""The SpatialTransformer module: identity start, parallel transformers, fixed theta, 3D."""

import pytest
import torch
from torch import nn

from stn_repro.st import Affine, Affine3D, Attention, SpatialTransformer, ThinPlateSpline


def localisation_net(in_features, width=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())


@pytest.mark.parametrize("transform", [Affine(), Attention(), ThinPlateSpline(16)])
def test_starts_at_identity(transform):
    st = SpatialTransformer(transform, (10, 10), localisation_net(100), 16)
    x = torch.rand(4, 1, 10, 10)
    out, theta = st(x)
    assert theta.shape == (4, transform.num_params)
    torch.testing.assert_close(theta, transform.identity_params()[None].expand(4, -1))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    assert torch.equal(st.regressor.weight, torch.zeros_like(st.regressor.weight))


def test_output_size_can_differ_from_input():
    st = SpatialTransformer(Attention(), (5, 7), localisation_net(3 * 12 * 12), 16)
    out, _ = st(torch.rand(2, 3, 12, 12))
    assert out.shape == (2, 3, 5, 7)


def test_parallel_transformers_share_the_localisation_network():
    torch.manual_seed(0)
    st = SpatialTransformer(
        Attention(), (6, 6), localisation_net(2 * 12 * 12), 16, num_transformers=2
    )
    with torch.no_grad():  # two different thetas: left half and right half, scale 0.5
        st.regressor.bias.copy_(torch.tensor([0.5, -0.5, 0.0, 0.5, 0.5, 0.0]))
    x = torch.rand(3, 2, 12, 12)
    out, theta = st(x)
    assert out.shape == (3, 2, 2, 6, 6) and theta.shape == (3, 2, 3)
    torch.testing.assert_close(out[:, 0], x[..., 3:9, 0:6], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], x[..., 3:9, 6:12], atol=1e-5, rtol=0)
    assert not torch.allclose(out[:, 0], out[:, 1])
    # Gradients reach the (shared) localisation network through both transformers.
    st.regressor.weight.data.normal_(0, 0.01)
    out, _ = st(x)
    out[:, 1].sum().backward()
    loc = list(st.localisation_parameters())
    assert len(loc) == 4  # the localisation Linear and the regressor: weight and bias each
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loc)


def test_localisation_parameters_are_separable_for_their_own_learning_rate():
    classifier = nn.Linear(10, 2)
    st = SpatialTransformer(Affine(), (4, 4), localisation_net(16), 16)
    model = nn.ModuleDict({"st": st, "classifier": classifier})
    loc_ids = {id(p) for p in st.localisation_parameters()}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    assert len(loc_ids) + len(rest) == len(list(model.parameters()))
    torch.optim.SGD(
        [{"params": rest}, {"params": list(st.localisation_parameters()), "lr": 1e-4}], lr=1e-2
    )


def test_fixed_theta_has_no_parameters():
    st = SpatialTransformer(Attention(), (4, 4), fixed_theta=torch.tensor([0.5, 0.0, 0.0]))
    x = torch.rand(2, 1, 8, 8)
    out, theta = st(x)
    assert list(st.parameters()) == [] and list(st.localisation_parameters()) == []
    torch.testing.assert_close(out, x[..., 2:6, 2:6], atol=1e-5, rtol=0)
    assert theta.shape == (2, 3)
    st2 = SpatialTransformer(
        Attention(), (4, 4), num_transformers=2, fixed_theta=[[0.5, -0.5, 0.0], [0.5, 0.5, 0.0]]
    )
    out, theta = st2(x)
    assert out.shape == (2, 2, 1, 4, 4) and theta.shape == (2, 2, 3)


def test_3d_transformer_flattens_depth():
    vol = torch.rand(2, 1, 6, 8, 8)
    loc = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8 * 8, 8), nn.ReLU())
    st = SpatialTransformer(Affine3D(), (6, 8, 8), loc, 8, flatten_depth=True)
    out, theta = st(vol)
    assert out.shape == (2, 1, 8, 8) and theta.shape == (2, 12)
    torch.testing.assert_close(out, vol.sum(dim=2), atol=1e-5, rtol=0)
    out.sum().backward()
    assert all(p.grad is not None for p in st.localisation_parameters())


def test_bad_input_is_rejected():
    st = SpatialTransformer(Affine3D(), (4, 4, 4), localisation_net(64), 16)
    with pytest.raises(ValueError, match=r"Affine3D is 3D and needs an input \(B, C, D, H, W\)"):
        st(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="Affine3D is 3D but output_size"):
        SpatialTransformer(Affine3D(), (4, 4), localisation_net(16), 16)
    with pytest.raises(ValueError, match="exactly one of"):
        SpatialTransformer(Affine(), (4, 4))
    with pytest.raises(ValueError, match="localisation_features"):
        SpatialTransformer(Affine(), (4, 4), localisation_net(16))
    with pytest.raises(ValueError, match="fixed_theta needs 1 x 6 values"):
        SpatialTransformer(Affine(), (4, 4), fixed_theta=torch.zeros(5))
    with pytest.raises(ValueError, match="flatten_depth only applies"):
        SpatialTransformer(Affine(), (4, 4), fixed_theta=torch.eye(2, 3), flatten_depth=True)


def test_initial_theta_sets_the_starting_transform():
    st = SpatialTransformer(
        Attention(), (4, 4), localisation_net(64), 16, initial_theta=torch.tensor([0.5, 0.0, 0.0])
    )
    x = torch.rand(2, 1, 8, 8)
    out, theta = st(x)
    torch.testing.assert_close(out, x[..., 2:6, 2:6], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="initial_theta needs 3 or 1 x 3 values"):
        SpatialTransformer(Attention(), (4, 4), localisation_net(64), 16, initial_theta=[1.0, 0])
