"""Real Lightning fits on real data, through the library and through the real CLI."""

import copy
import ctypes
import os
import time

import pytest
import pytorch_lightning as pl
import torch

from tests.helpers import ROOT, last_line, parse_metrics
from text_recognizer.config import resolve_config
from text_recognizer.datasets import DEBIAN_DIR
from text_recognizer.lit_models import BaseLitModel
from text_recognizer.models import MLP
from text_recognizer.models.mlp import Dropout
from text_recognizer.training import train
from text_recognizer.util import skip_nvml_probe_without_driver

pytestmark = pytest.mark.slow
RUN_EXPERIMENT = str(ROOT / "training" / "run_experiment.py")


def test_same_seed_same_run():
    config = resolve_config({"data_class": "MNISTSample", "max_epochs": 1, "fc1": 64, "seed": 3}, "test")
    first, second = train(config, quiet=True), train(config, quiet=True)
    assert first["val_loss"] == second["val_loss"]
    other = train({**config, "seed": 4}, quiet=True)
    assert other["val_loss"] != first["val_loss"]


def test_optimizer_is_fused_where_torch_has_it_and_steps_as_the_default_does():
    torch.manual_seed(0)
    model = MLP({"input_dims": (1, 28, 28), "output_dims": (10,)}, fc1=32, fc2=16, dropout=0.0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def losses(lit: BaseLitModel, optimizer: torch.optim.Optimizer) -> list[float]:
        values = []
        for _ in range(5):
            loss = lit.loss_fn(lit(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss.item())
        return values

    ours, default = (BaseLitModel(copy.deepcopy(model), num_classes=10) for _ in range(2))  # Adam
    fused = ours.configure_optimizers()
    assert fused.defaults["fused"] is True
    assert losses(ours, fused) == pytest.approx(losses(default, torch.optim.Adam(default.parameters())), rel=1e-5)
    rmsprop = BaseLitModel(copy.deepcopy(model), num_classes=10, optimizer="RMSprop")  # torch has no fused one
    optimizer = rmsprop.configure_optimizers()
    assert not optimizer.defaults.get("fused")
    values = losses(rmsprop, optimizer)
    assert values[-1] < values[0]


def test_one_optimizer_and_scheduler_step_per_batch_and_train_loss_is_their_mean():
    class Steps(pl.Callback):
        def __init__(self):
            self.losses = []

        def on_before_backward(self, trainer, pl_module, loss):
            self.losses.append(loss.item())

        def on_train_end(self, trainer, pl_module):
            self.global_step, self.scheduler_steps = trainer.global_step, pl_module.lr_schedulers().last_epoch
            self.logged = trainer.callback_metrics["train_loss"].item()

    # 10 batches become 2 Lightning steps of 8 batches each: 16 optimizer steps.
    config = {"data_class": "MNISTSample", "max_epochs": 1, "fc1": 16, "batch_size": 32, "limit_train_batches": 10}
    config = resolve_config({**config, "one_cycle_max_lr": 0.01, "one_cycle_total_steps": 16}, "test")
    steps = Steps()
    train(config, callbacks=[steps], quiet=True)
    assert len(steps.losses) == steps.global_step == steps.scheduler_steps == 16
    assert steps.logged == pytest.approx(sum(steps.losses) / 16, rel=1e-5)


def test_mlp_dropout_drops_p_of_the_inputs_and_scales_the_rest_as_torchs_does():
    torch.manual_seed(0)
    x = torch.ones(256, 1024, requires_grad=True)
    dropout = Dropout(0.3).train()
    y = dropout(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.01)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * scale)/dx = scale, which is y where x is 1
    assert torch.equal(dropout.eval()(x), x)


def test_nvml_probe_is_dropped_only_where_nvidia_driver_is_missing(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as importing Lightning sets it
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        driver = True
    except OSError:
        driver = False
    skip_nvml_probe_without_driver()
    assert (os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1") is driver
    assert torch.cuda.is_available() is (torch.cuda.device_count() > 0)


def test_cli_on_mnist_sample_beats_chance_and_tiny_model_is_worse(cli, tmp_path):
    run = cli(RUN_EXPERIMENT, "--model_class=MLP", "--data_class=MNISTSample", "--max_epochs=5")
    assert run.returncode == 0, run.stderr
    metrics = parse_metrics(last_line(run.stdout))
    assert metrics["val_acc"] >= 0.88 and metrics["test_acc"] >= 0.85
    tiny = cli(RUN_EXPERIMENT, "--data_class=MNISTSample", "--max_epochs=5", "--fc1=4", "--fc2=8", "--wandb")
    assert tiny.returncode == 0, tiny.stderr
    assert parse_metrics(last_line(tiny.stdout))["val_acc"] < 0.6
    # --wandb (the later FSDL labs' flag): Lightning's WandbLogger, offline, its files under --output_dir
    assert len(list(tmp_path.glob("training/logs/wandb/offline-run-*/run-*.wandb"))) == 1


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_cli_short_run_on_fashion_mnist(cli, tmp_path):
    run = cli(
        RUN_EXPERIMENT, "--data_class=FashionMNIST", "--max_epochs=1", "--limit_train_batches=100", "--batch_size=256"
    )
    assert run.returncode == 0, run.stderr
    assert parse_metrics(last_line(run.stdout))["val_acc"] >= 0.7
    assert list(tmp_path.glob("training/logs/MLP_FashionMNIST/version_0/checkpoints/best-*.ckpt"))
    assert list(tmp_path.glob("training/logs/MLP_FashionMNIST/version_0/events.out.tfevents.*"))


def test_unknown_data_class_is_one_line_error(cli):
    run = cli(RUN_EXPERIMENT, "--data_class=EMNIST")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "run_experiment.py: error: unknown data_class 'EMNIST': choose one of MNIST, MNISTSample, FashionMNIST"
    )


def test_missing_mnist_offline_is_one_line_error_within_30s(cli, tmp_path):
    started = time.monotonic()
    run = cli(RUN_EXPERIMENT, "--data_class=MNIST", f"--data_dir={tmp_path / 'nowhere'}")
    assert time.monotonic() - started < 30
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert "MNIST is not in" in lines[0] and "--data_class=MNISTSample" in lines[0]
    assert not (tmp_path / "nowhere").exists()  # no empty folder left that looks like a dataset


def test_gpus_without_gpu_is_an_error_not_a_cpu_run(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = cli(RUN_EXPERIMENT, "--data_class=MNISTSample", "--gpus=1")
    assert run.returncode == 1
    assert "asked for 1 GPU(s) but this machine has 0" in run.stderr
