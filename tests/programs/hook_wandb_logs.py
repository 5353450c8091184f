"""Small W&B programs, one per `--scenario`, that log as real training scripts do: the tests run each as a trial
and compare what the sweep reads of it with what W&B itself recorded (`wandb leet inspect`)."""

import argparse
import os
import subprocess
import sys

import wandb


def plain(run):
    for epoch in range(3):
        run.log({"loss": 1.0 / (epoch + 1), "epoch": epoch})


def commit_false_then_step(run):
    run.log({"loss": 1.0})
    run.log({"acc": 0.5}, commit=False)  # held at step 1 ...
    run.log({"loss": 0.9}, step=3)  # ... and committed alone when step 3 comes
    run.log({"loss": 0.8}, step=3)
    run.log({"acc": 0.7}, step=5, commit=True)
    run.log({"loss": 0.6})
    run.log({"loss": 0.5}, step=9)  # still held when the run finishes


def step_below_current(run):
    run.log({"loss": 1.0}, step=5)
    run.log({"loss": 0.5}, step=2)  # W&B drops it, with a warning
    run.log({"loss": 0.4}, step=2, commit=True)
    run.log({"loss": 0.3})  # no step: into the row held at step 5, which it commits
    run.log({"loss": 0.2}, step=7)


def nested(run):
    import numpy as np  # here alone: the other scenarios run under a Python that has wandb and no numpy

    run.log({"val": {"loss": 0.5, "acc": {"top1": 0.9}}, "train/loss": 0.7, "scaled": np.float32(0.25)})
    run.log({"val": {"loss": 0.4}})
    run.log({"note": "no numbers here"})  # a row all the same
    run.log({"val": {"loss": 0.3}, "_step": 40})  # W&B sets _step itself


def summary_only(run):
    run.summary["val/loss"] = 0.25
    wandb.summary["best/acc"] = 0.9
    run.summary.update({"epochs": 3, "config": {"lr": 0.1}})
    run.summary["config"]["depth"] = 4


def summary_after_training(run):
    losses = [0.9, 0.4, 0.6]
    for epoch, loss in enumerate(losses):
        run.log({"val/loss": loss, "epoch": epoch})
    run.summary["val/loss"] = min(losses)  # the best epoch's, not the last
    del run.summary["epoch"]
    run.log({"lr": 0.01}, commit=False)  # held until the run finishes, after the summary writes


def define_metric_summaries(run):
    run.define_metric("val/loss", summary="min")
    run.define_metric("acc*", summary="max,last")
    run.define_metric("train_loss", step_metric="epoch")  # W&B adds the last epoch to its rows
    run.define_metric("quiet", summary="none")
    run.log({"val/loss": 0.5, "epoch": 0, "quiet": 1.0})
    run.log({"val/loss": 0.3, "acc_top1": 0.2})
    run.log({"val/loss": 0.4, "acc_top1": 0.1, "epoch": 1})
    run.log({"train_loss": 1.5})
    run.summary["acc_top1"] = 0.15  # an explicit value replaces the statistics


def runs(run):
    """Other runs than the agent's: W&B keeps them apart (and refuses the agent's id to a child)."""
    run.log({"loss": 1.0})
    again = wandb.init()  # the run still going, returned again: its rows are the agent's run's
    again.log({"loss": 0.9})
    other = wandb.init(id="other", reinit="create_new")
    other.log({"loss": 5.0})
    other.summary["loss"] = 5.0
    other.finish()
    child = "import wandb; r = wandb.init(); r.log({'loss': 7.0}); r.finish()"
    subprocess.run([sys.executable, "-c", child], env={**os.environ, "WANDB_RUN_ID": "child"}, check=True)
    inherits = "import wandb; wandb.init()"  # W&B refuses it: 'run ID ... is in use'
    assert subprocess.run([sys.executable, "-c", inherits], capture_output=True).returncode != 0
    run.log({"loss": 0.8})


def another_id_only(run):
    run.log({"loss": 1.0})


def crash(run):
    """Fails after one logged value, as a training script that runs out of GPU memory does (exit code 1,
    the exception's line last on stderr, W&B's own lines after it)."""
    print("epoch 1 done (crash)")
    run.log({"val/loss": 0.5})
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (a stand-in)")


def silent(run):
    """Logs another name than the sweep's metric."""
    run.log({"val_loss": 0.5})


SCENARIOS = {
    scenario.__name__: scenario
    for scenario in [plain, commit_false_then_step, step_below_current, nested, summary_only, summary_after_training,
                     define_metric_summaries, runs, another_id_only, crash, silent]
}  # fmt: skip

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    scenario = parser.parse_args().scenario
    run = wandb.init(id="mine" if scenario == "another_id_only" else None)
    SCENARIOS[scenario](run)
    run.finish()
