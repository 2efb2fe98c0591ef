"""Each training feature changes what training does (every test here fails if the feature is inert)."""

from __future__ import annotations

import math

import pytest
import torch

from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.inference import make_loader
from faketrace.engine.optim import SAM
from faketrace.engine.schedulers import linear_decay, warmup_cosine, warmup_poly, warmup_step
from faketrace.engine.train import Trainer, train

from .conftest import compose_config, resolved

TINY = ["model=tiny", "trainer.progress_bar=false", "loader.batch_size=8", "loader.num_workers=0",
        "trainer.log_every_n_steps=1"]


def _trainer(demo_data, tmp_path, extra) -> Trainer:
    return Trainer(resolved(compose_config("train", demo_data["overrides"] + TINY + extra, output_dir=tmp_path)))


def _lrs(factory, steps, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = factory(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_follow_their_formulas():
    total, warm = 50, 5
    cos = _lrs(warmup_cosine, total, total_steps=total, warmup_steps=warm, min_lr_ratio=0.1)
    for t in (0, 4, 5, 20, 49):
        want = 0.1 * ((t + 1) / warm if t < warm else
                      0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm))))
        assert cos[t] == pytest.approx(want, rel=1e-12), t
    step = _lrs(warmup_step, total, total_steps=total, step_size=10, gamma=0.5, warmup_steps=0)
    assert [step[t] for t in (0, 9, 10, 25, 49)] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.00625])
    poly = _lrs(warmup_poly, total, total_steps=total, power=2.0, warmup_steps=0)
    for t in (0, 10, 49):
        assert poly[t] == pytest.approx(0.1 * (1 - t / total) ** 2)
    lin = _lrs(linear_decay, total, total_steps=total, start_fraction=0.8)  # decay over the last 10 steps
    assert [lin[t] for t in (0, 39, 40, 45, 49)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.01])


def test_layerwise_learning_rates_and_freezing(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, ["optim.lr=0.01", "param_groups.backbone_lr_mult=0.1",
                                        "param_groups.head_lr_mult=10"])
    lrs = {g["name"]: g["initial_lr"] if "initial_lr" in g else g["lr"] for g in tr.optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(0.001) and lrs["head"] == pytest.approx(0.1)
    head_params = {id(p) for g in tr.optimizer.param_groups if g["name"].startswith("head") for p in g["params"]}
    assert {id(p) for p in tr.model.backbone.get_classifier().parameters()} <= head_params
    frozen = _trainer(demo_data, tmp_path / "f", ["param_groups.freeze_backbone=true"])
    classifier = {id(p) for p in frozen.model.backbone.get_classifier().parameters()}
    for p in frozen.model.parameters():
        assert p.requires_grad == (id(p) in classifier)
    assert {g["name"] for g in frozen.optimizer.param_groups} <= {"head", "head_no_decay"}


def test_gradient_accumulation_equals_one_big_batch(demo_data, tmp_path):
    # BN-free tiny ViT so that batch statistics cannot differ between the two ways.
    common = ["model.backbone=test_vit", "model.input_size=160", "optim=sgd", "optim.momentum=0", "optim.nesterov=false",
              "optim.weight_decay=0", "scheduler=constant", "model.drop_rate=0"]
    big = _trainer(demo_data, tmp_path / "a", common + ["loader.batch_size=8"])
    acc = _trainer(demo_data, tmp_path / "b", common + ["loader.batch_size=4", "trainer.accumulate_grad_batches=2"])
    acc.model.load_state_dict(big.model.state_dict())
    batch = next(iter(make_loader(big.train_set, 8, 0, shuffle=False)))
    halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    before = {k: v.clone() for k, v in big.model.state_dict().items()}
    big.optimizer_step([batch])
    acc.optimizer_step(halves)
    changed = False
    for k, v in big.model.state_dict().items():
        torch.testing.assert_close(acc.model.state_dict()[k], v, atol=1e-6, rtol=1e-5)
        changed |= not torch.equal(v, before[k])
    assert changed


def test_ema_weights_are_the_ones_validated_and_saved(demo_data, tmp_path):
    result = train(resolved(compose_config("train", demo_data["overrides"] + TINY + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.ema_decay=0.9"], output_dir=tmp_path)))
    ckpt = load_checkpoint(result["last_ckpt"])
    assert ckpt["ema"]["updates"] == 4 and ckpt["model_raw"] is not None
    assert any(not torch.equal(ckpt["model"][k], ckpt["model_raw"][k]) for k in ckpt["model"])
    # Evaluating the saved weights reproduces the logged validation: the EMA weights were validated.
    from faketrace.engine.evaluate import evaluate_checkpoint

    cfg = compose_config("evaluate", demo_data["overrides"] + [f"ckpt_path={result['last_ckpt']}", "split=val",
                                                              "num_workers=0", "baseline=false"],
                         output_dir=tmp_path / "eval")
    report = evaluate_checkpoint(resolved(cfg))
    assert report["detector"]["frame"]["log_loss"] == pytest.approx(ckpt["metrics"]["val"]["frame"]["log_loss"],
                                                                    abs=1e-9)


def test_early_stopping_stops_on_a_plateau(demo_data, tmp_path):
    # An AUC cannot rise by a whole 1.0, so no epoch after the first counts as an improvement.
    # (lr 0 alone is not a plateau: batch-norm running statistics still move in training mode.)
    result = train(resolved(compose_config("train", demo_data["overrides"] + TINY + [
        "trainer.max_epochs=10", "trainer.limit_train_batches=1", "optim.lr=0", "scheduler=constant",
        "trainer.early_stopping.patience=2", "trainer.early_stopping.min_delta=1.0"], output_dir=tmp_path)))
    assert result["stopped_early"] and result["epochs_run"] == 3


def test_balanced_sampling_draws_classes_equally(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, [])
    labels = tr.train_set.labels()
    assert labels.mean() > 0.6  # the demo's training crops are mostly fake
    drawn = torch.cat([b["label"] for b in make_loader(tr.train_set, 64, 0, True, seed=0, balanced=True)])
    plain = torch.cat([b["label"] for b in make_loader(tr.train_set, 64, 0, True, seed=0)])
    assert abs(drawn.float().mean().item() - 0.5) < 0.1
    assert abs(plain.float().mean().item() - labels.mean()) < 1e-9


def test_sam_takes_a_different_step_than_its_base_optimizer(demo_data, tmp_path):
    sam = _trainer(demo_data, tmp_path / "sam", ["optim=sam", "optim.lr=0.05"])
    sgd = _trainer(demo_data, tmp_path / "sgd", ["optim=sgd", "optim.lr=0.05", "optim.nesterov=false",
                                                 "optim.weight_decay=0"])
    assert isinstance(sam.optimizer, SAM)
    sgd.model.load_state_dict(sam.model.state_dict())
    batch = next(iter(make_loader(sam.train_set, 8, 0, shuffle=False)))
    start = {k: v.clone() for k, v in sam.model.state_dict().items()}
    sam.optimizer_step([batch])
    sgd.optimizer_step([batch])
    moved = [k for k, v in sam.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
    differs = [k for k in moved if not torch.allclose(sam.model.state_dict()[k], sgd.model.state_dict()[k])]
    assert moved and differs


def test_gradient_clipping_bounds_the_update(demo_data, tmp_path):
    common = ["optim=sgd", "optim.momentum=0", "optim.weight_decay=0", "optim.lr=1.0", "scheduler=constant",
              "optim.nesterov=false"]
    clipped = _trainer(demo_data, tmp_path / "c", common + ["trainer.grad_clip=0.001"])
    free = _trainer(demo_data, tmp_path / "f", common)
    free.model.load_state_dict(clipped.model.state_dict())
    batch = next(iter(make_loader(free.train_set, 8, 0, shuffle=False)))
    start = torch.cat([p.detach().flatten().clone() for p in free.model.parameters()])
    clipped.optimizer_step([batch])
    free.optimizer_step([batch])
    step_clipped = (torch.cat([p.detach().flatten() for p in clipped.model.parameters()]) - start).norm()
    step_free = (torch.cat([p.detach().flatten() for p in free.model.parameters()]) - start).norm()
    assert step_clipped <= 0.001 + 1e-6 < step_free


def test_label_smoothing_changes_the_loss_target(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, ["model.label_smoothing=0.2"])
    logits = torch.tensor([10.0, -10.0])
    batch = {"label": torch.tensor([1, 0])}
    smoothed = tr.model.loss(logits, batch)
    tr.model.label_smoothing = 0.0
    assert smoothed > tr.model.loss(logits, batch) + 0.5


@pytest.mark.slow
def test_torch_compile_trains_like_eager(demo_data, tmp_path):
    common = ["optim=sgd", "optim.momentum=0", "optim.nesterov=false", "scheduler=constant"]
    eager = _trainer(demo_data, tmp_path / "e", common)
    compiled = _trainer(demo_data, tmp_path / "c", common + ["trainer.compile=true"])
    assert compiled.forward_model is not compiled.model  # really wrapped
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = next(iter(make_loader(eager.train_set, 8, 0, shuffle=False)))
    loss_e = float(eager.optimizer_step([batch]))
    loss_c = float(compiled.optimizer_step([batch]))
    assert loss_c == pytest.approx(loss_e, rel=1e-4, abs=1e-5)
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[k], v, atol=1e-4, rtol=1e-4)


def test_train_benchmark_reports_all_three_figures_and_the_step_breakdown(demo_data, tmp_path):
    import json
    import subprocess
    import sys

    from faketrace.engine.step_timing import LABELS, PHASES

    from .conftest import REPO

    out = subprocess.run([sys.executable, "scripts/benchmark.py", "train", "--steps", "2", "--warmup", "1",
                          "--repeats", "1", "--breakdown-steps", "3", "--json", str(tmp_path / "train.json"),
                          *demo_data["overrides"], "model=tiny", "loader.num_workers=0", "loader.batch_size=8",
                          "trainer.log_every_n_steps=2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "train.json").read_text())
    assert set(result["median"]) == {"model_only", "end_to_end", "loader_only"}
    assert all(v > 0 for v in result["median"].values())
    assert result["ratio_end_to_end_over_model"] == pytest.approx(
        result["median"]["end_to_end"] / result["median"]["model_only"])
    # The breakdown: every phase of three real steps, shares of the whole step time that add up.
    breakdown = result["breakdown"]
    assert breakdown["steps"] == 3 and set(breakdown["phases"]) == {*PHASES, "other"}
    assert sum(p["share"] for p in breakdown["phases"].values()) == pytest.approx(1.0)
    for phase in ("data", "forward", "backward", "optimizer"):  # real work in each of these on every step
        assert breakdown["phases"][phase]["median_ms"] > 0, phase
    assert 0 < breakdown["phases"]["forward"]["median_ms"] < breakdown["step_median_ms"]
    assert "per-step breakdown (3 steps on cpu" in out.stdout
    for phase in PHASES:
        assert LABELS[phase] in out.stdout


def test_step_timer_times_each_phase_of_the_trainers_own_loop(demo_data, tmp_path):
    """The timer sees the loop fit_loop runs: data, copy, forward, backward, optimiser, and the log point."""
    from faketrace.engine.step_timing import StepTimer

    tr = _trainer(demo_data, tmp_path, ["trainer.log_every_n_steps=2"])
    tr.step_timer = StepTimer(tr.device)
    done = tr.run_steps(tr.train_loader(0), 4)
    assert done["steps"] == 4 and len(tr.step_timer.steps) == 4 and tr.global_step == 4
    logged = [s["host_sync"] > 0 for s in tr.step_timer.steps]
    assert logged == [False, True, False, True]  # .item() and logging only at the log points
    for step in tr.step_timer.steps:
        assert step["forward"] > 0 and step["backward"] > 0 and step["optimizer"] > 0 and step["data"] > 0
        assert step["step"] == pytest.approx(sum(v for k, v in step.items() if k != "step"))
    assert done["loss_mean"] is not None and math.isfinite(done["loss_mean"])


def test_training_steps_return_the_loss_on_the_device_without_reading_it(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, [])
    batch = next(iter(tr.train_loader(0)))
    loss = tr.optimizer_step([batch])
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.device == tr.device
    assert not loss.requires_grad and math.isfinite(float(loss))


@pytest.mark.parametrize("experiment", ["dfdc_efficientnet_b4", "sbi_efficientnet_b4", "ffpp_xception_c23"])
def test_literature_experiments_default_to_the_fast_path_and_the_demo_stays_deterministic(experiment):
    from faketrace.engine.inference import resolve_num_workers
    from faketrace.engine.train import speed_settings

    fast = resolved(compose_config("train", [f"experiment={experiment}"]))
    demo = resolved(compose_config("train", ["experiment=demo"]))
    assert fast.trainer.deterministic is False and fast.loader.num_workers == "auto"
    assert demo.trainer.deterministic is True and demo.loader.num_workers == 2
    gpu, cpu = torch.device("cuda"), torch.device("cpu")  # settings only: no device is touched
    assert speed_settings(fast, gpu)["cudnn_benchmark"] is True and speed_settings(demo, gpu)["cudnn_benchmark"] is False
    assert speed_settings(fast, cpu)["cudnn_benchmark"] is False
    assert "not bit for bit" in speed_settings(fast, cpu)["note"]
    assert speed_settings(fast, cpu)["num_workers"] == resolve_num_workers("auto")


def test_loader_and_compile_settings_resolve():
    import os

    from faketrace.engine.inference import resolve_num_workers
    from faketrace.engine.train import speed_settings

    cpus = len(os.sched_getaffinity(0))
    assert resolve_num_workers("auto") == max(1, min(cpus - 1, 16)) and resolve_num_workers(3) == 3
    compiled = resolved(compose_config("train", ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"]))
    s = speed_settings(compiled, torch.device("cpu"))
    assert s["compile_mode"] == "reduce-overhead" and s["drop_last"] is True  # one batch shape, one graph
    assert speed_settings(resolved(compose_config("train", [])), torch.device("cpu"))["drop_last"] is False
    with pytest.raises(ValueError, match="compile_mode"):
        speed_settings(resolved(compose_config("train", ["trainer.compile_mode=fastest"])), torch.device("cpu"))


def test_checkpoints_record_the_speed_settings_and_compiled_runs_drop_the_partial_batch(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, ["trainer.deterministic=false", "loader.batch_size=7"])
    payload = tr._payload({})
    assert payload["speed"]["deterministic"] is False and "not bit for bit" in payload["speed"]["note"]
    assert not torch.are_deterministic_algorithms_enabled()
    n = len(tr.train_set)
    assert tr.batches_per_epoch == math.ceil(n / 7)
    dropped = _trainer(demo_data, tmp_path / "d", ["loader.batch_size=7", "loader.drop_last=true"])
    assert torch.are_deterministic_algorithms_enabled()
    assert dropped.batches_per_epoch == n // 7
    sizes = {len(b["image"]) for b in dropped.train_loader(0)}
    assert sizes == {7}
