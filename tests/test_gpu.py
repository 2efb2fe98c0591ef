"""The GPU code paths: mixed precision, channels_last, torch.compile (CUDA graphs too), NCCL DDP.

Marked `gpu`: skipped where CUDA is not available (tests/conftest.py), run by scripts/gpu_check.sh
on a GPU machine. What can be checked without a GPU is checked on CPU in test_training*.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from faketrace.engine.train import Trainer

from .conftest import REPO, compose_config, resolved

pytestmark = pytest.mark.gpu

TINY_GPU = ["model=tiny", "trainer=gpu", "trainer.progress_bar=false", "loader.batch_size=8",
            "loader.num_workers=0", "trainer.log_every_n_steps=1000"]


def _trainer(demo_data, tmp_path, extra) -> Trainer:
    return Trainer(resolved(compose_config("train", demo_data["overrides"] + TINY_GPU + extra, output_dir=tmp_path)))


def _params(tr: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tr.model.parameters()]


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_mixed_precision_steps_run_the_model_in_half_precision_and_update_the_weights(demo_data, tmp_path, precision):
    tr = _trainer(demo_data, tmp_path, [f"trainer.precision={precision}"])
    seen = []
    tr.model.backbone.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    scaler = torch.amp.GradScaler("cuda") if precision == "16-mixed" else None
    before = _params(tr)
    batch = next(iter(tr.train_loader(0)))
    loss = tr.optimizer_step([batch], scaler)
    assert loss.device.type == "cuda" and math.isfinite(float(loss))
    assert seen == [torch.bfloat16 if precision == "bf16" else torch.float16]
    assert any(not torch.equal(a, b) for a, b in zip(before, _params(tr), strict=True))


def test_channels_last_model_gives_the_logits_of_the_contiguous_one(demo_data, tmp_path):
    tr = _trainer(demo_data, tmp_path, ["trainer.precision=32"])
    assert tr.channels_last
    conv = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, tr.model.input_size, tr.model.input_size, device=tr.device)
    tr.model.eval()
    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            nhwc = tr.model(x.contiguous(memory_format=torch.channels_last))
            nchw = tr.model.to(memory_format=torch.contiguous_format)(x)
    finally:
        torch.backends.cudnn.allow_tf32 = allow
    torch.testing.assert_close(nhwc, nchw, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_steps_train_like_eager_on_the_gpu(demo_data, tmp_path, mode):
    common = ["trainer.precision=32", "optim=sgd", "optim.momentum=0", "optim.nesterov=false", "scheduler=constant",
              "trainer.deterministic=true"]
    eager = _trainer(demo_data, tmp_path / "e", common)
    compiled = _trainer(demo_data, tmp_path / "c", common + ["trainer.compile=true",
                                                             f"trainer.compile_mode={mode or 'null'}"])
    assert compiled.forward_model is not compiled.model
    assert compiled.cuda_graphs == (mode == "reduce-overhead")
    compiled.model.load_state_dict(eager.model.state_dict())
    batches = [b for _, b in zip(range(3), compiled.train_loader(0), strict=False)]
    for batch in batches:  # CUDA graphs are recorded after warm-up runs: three steps reach the replay
        loss_e, loss_c = float(eager.optimizer_step([batch])), float(compiled.optimizer_step([batch]))
        assert loss_c == pytest.approx(loss_e, rel=1e-3, abs=1e-4)
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[k], v, atol=1e-3, rtol=1e-3)


def test_training_steps_make_no_host_synchronisation_between_log_points(demo_data, tmp_path):
    """The issue's fixed cost: every .item() drains the GPU queue. Between log points there is none."""
    from faketrace.engine.step_timing import StepTimer

    tr = _trainer(demo_data, tmp_path, ["trainer.precision=bf16"])
    batches = [{k: v.pin_memory() for k, v in b.items()} for _, b in zip(range(4), tr.train_loader(0), strict=False)]
    tr.run_steps(iter(batches), 1)  # warm-up: cuDNN and allocator set-up may synchronise once
    tr.step_timer = StepTimer(tr.device)
    tr.run_steps(iter(batches[1:]), 3)
    summary = tr.step_timer.summary()
    assert summary["steps"] == 3 and summary["host_syncs_per_step"] == 0


def test_one_process_nccl_ddp_step_matches_the_plain_model(tmp_path):
    """NCCL with one rank: DDP's gradient all-reduce runs and leaves the single-process step unchanged."""
    script = textwrap.dedent("""
        import copy, os, sys
        import torch, torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
        dist.init_process_group("nccl", rank=0, world_size=1)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                  torch.nn.LazyLinear(1)).cuda()
        x = torch.randn(4, 3, 16, 16, device="cuda")
        net(x)
        plain = copy.deepcopy(net)
        ddp = DistributedDataParallel(net, device_ids=[0])
        ddp(x).square().mean().backward()
        plain(x).square().mean().backward()
        for a, b in zip(net.parameters(), plain.parameters()):
            torch.testing.assert_close(a.grad, b.grad)
        t = torch.ones(1, device="cuda")
        dist.all_reduce(t)
        assert t.item() == 1.0
        dist.destroy_process_group()
        print("nccl ok", dist.is_nccl_available())
    """)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-c", script, str(port)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nccl ok True" in out.stdout
