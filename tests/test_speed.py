"""Speed settings: what they leave alone (a run's identity, its result) and what they change;
the divergence check that runs without a host synchronisation per step."""

from __future__ import annotations

import pytest
import torch

from stn_repro import speed, tasks
from stn_repro.config import config_hash, run_dir
from stn_repro.engine import FiniteWatch, TrainingDiverged, check_weights, train_run
from stn_repro.models import DataSpec, build_model
from stn_repro.runs import load_checkpoint


def test_speed_settings_and_fp32_keep_a_runs_identity(compose_cfg):
    plain = config_hash(compose_cfg("model=st_cnn"))
    same = compose_cfg("model=st_cnn", "speed.compile=true", "speed.channels_last=true",
                       "speed.threads=1", "schedule.precision=fp32")  # fmt: skip
    assert config_hash(same) == plain
    assert config_hash(compose_cfg("model=st_cnn", "schedule.precision=bf16")) != plain


def final_weights(cfg) -> dict:
    where = run_dir(cfg)
    train_run(cfg, where)
    return load_checkpoint(where, cfg, config_hash(cfg))["model"]


def test_channels_last_trains_the_same_model(compose_cfg, tmp_path):
    plain = final_weights(compose_cfg("model=st_cnn", f"run_dir={tmp_path}/plain"))
    nhwc = final_weights(compose_cfg("model=st_cnn", f"run_dir={tmp_path}/nhwc",
                                     "speed.channels_last=true"))  # fmt: skip
    assert plain.keys() == nhwc.keys()
    for name, value in plain.items():
        torch.testing.assert_close(nhwc[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_trains_close_to_fp32(compose_cfg, tmp_path, monkeypatch):
    # On a CPU without bfloat16 instructions an explicit bf16 stops (below); torch still
    # emulates it, which is all this numerical check needs, so the CPU is taken to have them.
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})
    fp32 = final_weights(compose_cfg("model=st_cnn", f"run_dir={tmp_path}/fp32"))
    bf16 = final_weights(compose_cfg("model=st_cnn", f"run_dir={tmp_path}/bf16",
                                     "schedule.precision=bf16"))  # fmt: skip
    moved = [(bf16[k] - fp32[k]).abs().max().item() for k in fp32 if fp32[k].is_floating_point()]
    assert 0 < max(moved) < 0.05  # bfloat16 rounding: different, but the same training


@pytest.mark.slow
def test_compiled_model_gives_the_same_loss_and_gradients(compose_cfg):
    """torch.compile (inductor, on the CPU here) against eager. The transformer starts away from
    the identity: at the identity every sampling point lies on a pixel centre, where bilinear
    sampling's gradient is one-sided and a rounding difference flips which side is used."""
    cfg = compose_cfg("model=st_cnn")
    torch.manual_seed(0)
    model = build_model(cfg.model, DataSpec((1, 42, 42), 10))
    with torch.no_grad():
        model.st.regressor.bias.add_(0.05 * torch.randn_like(model.st.regressor.bias))
    x, y = torch.rand(8, 1, 42, 42), torch.randint(0, 10, (8,))

    def loss_and_grads(net):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}

    cfg.speed.compile = True
    cpu = torch.device("cpu")
    eager, compiled = loss_and_grads(model), loss_and_grads(speed.compiled(model, cfg.speed, cpu))
    torch.testing.assert_close(compiled[0], eager[0])
    for name, grad in eager[1].items():
        torch.testing.assert_close(compiled[1][name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_channels_last_leaves_3d_convolutions_alone(compose_cfg):
    cfg = compose_cfg("dataset=mnist3d", "model=st3d_cnn", "speed.channels_last=true")
    model = build_model(cfg.model, DataSpec((1, 60, 60, 60), 10, 2))
    speed.prepare(model, cfg.speed)  # 3D weights have no channels-last layout: kept as they are
    conv2d = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv2d and all(m.weight.is_contiguous(memory_format=torch.channels_last)
                          for m in conv2d)  # fmt: skip


def test_a_model_with_non_finite_weights_is_refused():
    model = torch.nn.Linear(2, 2)
    check_weights(model, 5, "run", lr=0.01)  # finite: nothing
    with torch.no_grad():
        model.bias[0] = float("inf")
    with pytest.raises(TrainingDiverged, match="weights became NaN or infinite by iteration 5"):
        check_weights(model, 5, "run", lr=0.01)


def test_finite_watch_reports_the_first_bad_loss():
    watch = FiniteWatch()
    for it, loss in enumerate([2.3, 2.1, float("inf"), float("nan"), 1.0]):
        watch.see(torch.tensor(loss), it)
        if it < 2:
            watch.check("run", lr=0.01)  # nothing yet
    with pytest.raises(TrainingDiverged, match="became inf at iteration 2 of run; .*lr=0.001"):
        watch.check("run", lr=0.01)


def test_a_loss_gone_bad_between_checks_is_caught_before_the_next_checkpoint(
    compose_cfg, monkeypatch
):
    cfg = compose_cfg("model=fcn")  # smoke: a check and a checkpoint every 2 iterations
    real, calls = tasks.F.cross_entropy, []

    def bad_at_3(*args, **kwargs):
        calls.append(None)
        return real(*args, **kwargs) * (float("nan") if len(calls) == 4 else 1.0)

    monkeypatch.setattr(tasks.F, "cross_entropy", bad_at_3)
    with pytest.raises(TrainingDiverged, match="became nan at iteration 3 "):
        train_run(cfg, run_dir(cfg))
    saved = load_checkpoint(run_dir(cfg), cfg, config_hash(cfg))
    assert saved["iteration"] == 2  # the step-4 checkpoint (a NaN model) was never written


def test_bf16_on_a_cpu_without_bfloat16_instructions_stops_in_one_line(monkeypatch):
    """Precision is part of a run's identity, so no silent fp32 fallback: a stop, before work."""
    from stn_repro.errors import UserError

    cpu = torch.device("cpu")
    monkeypatch.setattr(speed.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(UserError, match="no bfloat16 instructions .*use schedule.precision=fp32"):
        speed.resolve_precision("bf16", cpu)
    assert speed.resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert speed.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(speed, "cpu_flags", lambda: None)  # unknown: let torch decide
    assert speed.resolve_precision("bf16", cpu) == "bf16"


def test_auto_precision_is_bf16_where_native_and_fp32_with_one_line_elsewhere(monkeypatch, capsys):
    cpu = torch.device("cpu")
    monkeypatch.setattr(speed.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert speed.resolve_precision("auto", cpu) == "bf16"
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert speed.resolve_precision("auto", cpu) == "fp32"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no bfloat16 instructions" in err[0] and "trains in fp32" in err[0]
    monkeypatch.setattr(speed.platform, "machine", lambda: "arm64")  # cannot tell: fp32
    assert speed.resolve_precision("auto", cpu) == "fp32"
    assert "trains in fp32" in capsys.readouterr().err


def test_compile_without_a_cpp_compiler_trains_uncompiled_with_one_warning(monkeypatch, capsys):
    from omegaconf import OmegaConf

    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    model = torch.nn.Linear(3, 2)
    net = speed.compiled(model, OmegaConf.create({"compile": True}), torch.device("cpu"))
    assert net is model
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a C++ compiler" in err[0] and "training uncompiled" in err[0]
