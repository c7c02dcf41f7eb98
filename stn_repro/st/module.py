"""The spatial transformer module: localisation network + transform + sampler (paper Sec. 3)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .sampler import MODES, sample
from .transforms import Transform


class SpatialTransformer(nn.Module):
    """Warp a map by a transform whose parameters a localisation network regresses.

    Args:
        transform: a parameterisation from ``stn_repro.st.transforms``.
        output_size: ``(H, W)`` (or ``(D, H, W)`` for a 3D transform) of each warped map.
        localisation: network mapping the input ``(B, C, ...)`` to features ``(B, F)``. A final
            linear layer ``F -> num_transformers * num_params`` is added; it starts at the
            identity (zero weights, bias = the identity parameters). An ``nn.ModuleList`` of
            ``num_transformers`` networks instead gives each transformer its own localisation
            network and regression layer ``F -> num_params`` (nothing shared).
        localisation_features: ``F``; required with ``localisation``.
        num_transformers: ``N`` transformers run in parallel on the same input, sharing the
            localisation network (one regression layer predicts all N thetas) unless
            ``localisation`` is a list of N networks.
        fixed_theta: instead of a localisation network, always use this theta, shape
            ``(num_params,)`` or ``(N, num_params)``.
        mode: ``"bilinear"`` or ``"nearest"`` sampling.
        flatten_depth: for 3D transforms, sum the ``(B, C, D, H, W)`` output over depth into a
            ``(B, C, H, W)`` map (the projection of Appendix A.3).
        initial_theta: where the regression layer starts, shape ``(num_params,)`` or
            ``(N, num_params)``; the identity by default.
        regressor_init_std: standard deviation of the regression layer's initial weights. 0 (the
            default): zero weights, so every input starts at ``initial_theta``. A small value
            makes each theta depend on the input from the start, which breaks the symmetry
            between parallel transformers that share a localisation network.

    ``forward(x)`` returns ``(output, theta)``. With ``N = 1``: output ``(B, C, *output_size)``,
    theta ``(B, num_params)``. With ``N > 1``: output ``(B, N, C, *output_size)``, theta
    ``(B, N, num_params)``. (With ``flatten_depth`` the depth axis is summed away.)
    """

    def __init__(
        self,
        transform: Transform,
        output_size: Sequence[int],
        localisation: nn.Module | None = None,
        localisation_features: int | None = None,
        num_transformers: int = 1,
        fixed_theta: Tensor | None = None,
        mode: str = "bilinear",
        flatten_depth: bool = False,
        initial_theta: Tensor | None = None,
        regressor_init_std: float = 0.0,
    ):
        super().__init__()
        if (localisation is None) == (fixed_theta is None):
            raise ValueError("give exactly one of `localisation` and `fixed_theta`")
        if len(output_size) != transform.dim:
            raise ValueError(
                f"{type(transform).__name__} is {transform.dim}D but output_size "
                f"{tuple(output_size)} has {len(output_size)} dimensions"
            )
        if num_transformers < 1:
            raise ValueError(f"num_transformers must be >= 1, got {num_transformers}")
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; choose one of {MODES}")
        if flatten_depth and transform.dim != 3:
            raise ValueError("flatten_depth only applies to a 3D transform")
        self.transform = transform
        self.output_size = tuple(int(s) for s in output_size)
        self.num_transformers = num_transformers
        self.mode = mode
        self.flatten_depth = flatten_depth
        n_theta = num_transformers * transform.num_params
        given = transform.identity_params() if initial_theta is None else initial_theta
        start = torch.as_tensor(given, dtype=torch.float32).reshape(-1)
        if start.numel() == transform.num_params:  # one theta for every transformer
            start = start.repeat(num_transformers)  # (N * P,)
        if start.numel() != n_theta:
            raise ValueError(
                f"initial_theta needs {transform.num_params} or {num_transformers} x "
                f"{transform.num_params} values, got {torch.as_tensor(given).numel()}"
            )
        self.localisation = localisation
        self.independent = isinstance(localisation, nn.ModuleList)
        if self.independent and len(localisation) != num_transformers:
            raise ValueError(f"{len(localisation)} localisation networks for {num_transformers} "
                             "transformers; give one per transformer")  # fmt: skip
        if localisation is not None:
            if localisation_features is None:
                raise ValueError("`localisation_features` (the network's output width) is needed")
            outputs = transform.num_params if self.independent else n_theta
            regressors = [nn.Linear(localisation_features, outputs)
                          for _ in range(num_transformers if self.independent else 1)]  # fmt: skip
            for regressor, bias in zip(regressors, start.split(outputs), strict=True):
                if regressor_init_std:
                    nn.init.normal_(regressor.weight, std=regressor_init_std)
                else:  # no random draw: the models' other weights stay as without the option
                    nn.init.zeros_(regressor.weight)
                with torch.no_grad():
                    regressor.bias.copy_(bias)
            if self.independent:
                self.regressors = nn.ModuleList(regressors)
            else:
                self.regressor = regressors[0]
        else:
            theta = torch.as_tensor(fixed_theta, dtype=torch.float32).reshape(-1)
            if theta.numel() != n_theta:
                raise ValueError(
                    f"fixed_theta needs {num_transformers} x {transform.num_params} values, "
                    f"got {theta.numel()}"
                )
            self.regressor = None
            self.register_buffer("fixed_theta", theta)

    def regression_layers(self) -> list[nn.Linear]:
        """The final linear layers regressing theta: one per transformer with independent
        localisation networks, one shared otherwise, none with a fixed theta."""
        if self.localisation is None:
            return []
        return list(self.regressors) if self.independent else [self.regressor]

    def localisation_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the localisation network and its regression layer (for their own lr)."""
        if self.localisation is not None:
            yield from self.localisation.parameters()
            for layer in self.regression_layers():
                yield from layer.parameters()

    def theta(self, x: Tensor) -> Tensor:
        """Regress theta ``(B, N * num_params)`` from the input."""
        if self.localisation is None:
            return self.fixed_theta.to(x.dtype).expand(x.shape[0], -1)
        if self.independent:
            pairs = zip(self.localisation, self.regressors, strict=True)
            return torch.cat([regressor(net(x)) for net, regressor in pairs], dim=1)
        return self.regressor(self.localisation(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != self.transform.dim + 2:
            want = "(B, C, H, W)" if self.transform.dim == 2 else "(B, C, D, H, W)"
            raise ValueError(
                f"{type(self.transform).__name__} is {self.transform.dim}D and needs an input "
                f"{want}, got {tuple(x.shape)}"
            )
        b, n, p = x.shape[0], self.num_transformers, self.transform.num_params
        theta = self.theta(x).reshape(b * n, p)
        grid = self.transform.grid(theta, self.output_size)  # (B * N, *output_size, dim)
        source = x if n == 1 else x.repeat_interleave(n, dim=0)  # (B * N, C, ...)
        out = sample(source, grid, self.mode)  # (B * N, C, *output_size)
        if self.flatten_depth:
            out = out.sum(dim=2)
        if n == 1:
            return out, theta
        return out.view(b, n, *out.shape[1:]), theta.view(b, n, p)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, num_transformers={self.num_transformers}, "
            f"mode={self.mode!r}, flatten_depth={self.flatten_depth}"
        )
