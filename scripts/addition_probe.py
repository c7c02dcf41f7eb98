"""Linear probes on a trained Table 4 (MNIST addition) model: does it know each digit?

    python scripts/addition_probe.py RUN_DIR [RUN_DIR ...] [--pairs 20000] [--epochs 30]

A model of Table 4 is trained on the sum only. This reads the features its classification
layer sees (the input of its last linear layer) and fits, on those frozen features, a linear
softmax classifier ("probe") for each channel's digit and one for the sum. The probes train on
pairs of training digits and are scored on pairs of the run's held-out validation digits
(``dataset.validation``; the test digits are never read), each pair drawn with the run's RTS
distortions. A model whose features give each digit at a low error but whose sum error is high
fails at reading the sum out; one whose features do not give the digits has not learnt them.
Prints, per run, the model's own sum error on the validation pairs and the probes' errors (%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from stn_repro.data.generators import addition
from stn_repro.data.sources import load_mnist
from stn_repro.errors import UserError
from stn_repro.trained import load_trained

BATCH = 500


def pairs(cfg, digits: Tensor, labels: Tensor, n: int, seed: int):
    """``n`` addition inputs (float, [0, 1]) drawn from ``digits`` as the run's generator draws
    them, and their labels ``(n, 3)``: channel 0's digit, channel 1's digit, the sum."""
    rng = torch.Generator().manual_seed(seed)
    first = torch.randint(0, len(digits), (n,), generator=rng)
    p = cfg.dataset.params
    images, total, params = addition(digits[first], labels[first], rng, (digits, labels),
                                     tuple(p.rotation), tuple(p.scale), int(p.canvas))  # fmt: skip
    second = labels[params[:, -1].long()]
    return images.float().div(255), torch.stack([total - second, second, total], dim=1)


@torch.no_grad()
def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The input of the last linear layer of ``model``'s classifier head (``model.head``, else
    the model: never a localisation network's), flattened, and the logits, for each input."""
    head = getattr(model, "head", model)
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    seen = []
    hook = last.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].flatten(1)))
    try:
        logits = torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    finally:
        hook.remove()
    return torch.cat(seen).float(), logits


def probe_error(train: Tensor, y: Tensor, test: Tensor, y_test: Tensor, epochs: int) -> float:
    """% error on ``test`` of a softmax classifier fitted on ``train`` (Adam, minibatches)."""
    torch.manual_seed(0)
    probe = nn.Linear(train.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for batch in torch.randperm(len(train)).split(256):
            loss = nn.functional.cross_entropy(probe(train[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return 100 * (probe(test).argmax(1) != y_test).float().mean().item()


def probe_run(run_dir: Path, n_pairs: int, epochs: int) -> dict[str, float]:
    """The run's own sum error and the three probes' errors on its validation pairs (%)."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    held_out = int(cfg.dataset.get("validation") or 0)
    if cfg.dataset.generator != "addition" or not held_out:
        raise UserError(f"{run_dir}: not a Table 4 run with validation digits "
                        "(dataset.validation); the probes never read the test digits")  # fmt: skip
    model = load_trained(cfg, run_dir)
    digits, labels = load_mnist(cfg.paths.data_dir, "train")
    cut = len(digits) - held_out
    x_fit, y_fit = pairs(cfg, digits[:cut], labels[:cut], n_pairs, seed=1)
    x_val, y_val = pairs(cfg, digits[cut:], labels[cut:], held_out, seed=2)
    f_fit, _ = features_and_logits(model, x_fit)
    f_val, logits = features_and_logits(model, x_val)
    mean, std = f_fit.mean(0), f_fit.std(0) + 1e-6
    f_fit, f_val = (f_fit - mean) / std, (f_val - mean) / std
    result = {"model sum": 100 * (logits.argmax(1) != y_val[:, 2]).float().mean().item()}
    for k, name in enumerate(["probe digit ch0", "probe digit ch1", "probe sum"]):
        result[name] = probe_error(f_fit, y_fit[:, k], f_val, y_val[:, k], epochs)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--pairs", type=int, default=20000, help="training pairs for the probes")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print("| Run | Model's sum error | Probe: digit ch0 | Probe: digit ch1 | Probe: sum |")
    print("|---|---:|---:|---:|---:|")
    for run in args.runs:
        r = probe_run(run, args.pairs, args.epochs)
        rows.append({"run": str(run), **r})
        print(f"| {run} | " + " | ".join(f"{v:.2f}" for v in r.values()) + " |")
    return rows


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        raise SystemExit(f"addition_probe: {err}") from None
