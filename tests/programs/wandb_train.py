"""A stand-in for a W&B training script run by W&B's default command (no arguments): it takes every value
from wandb.config, logs `val/loss` once per epoch with wandb.log, and writes what wandb.config held to
seen.json in its W&B directory. The closer `optimizer.lr` is to 0.01, the lower its loss.

With `stubborn: true` it ignores SIGTERM and starts a child process that would outlive it, as a careless
program does; it writes both PIDs to pids.json."""

import json
import math
import os
import signal
import subprocess
import time

import wandb

run = wandb.init()
config = dict(wandb.config)
run_dir = os.environ["WANDB_DIR"]
with open(os.path.join(run_dir, "seen.json"), "w") as f:
    json.dump({"config": config, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
if config.get("stubborn"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "600"])
    with open(os.path.join(run_dir, "pids.json"), "w") as f:
        json.dump([os.getpid(), child.pid], f)
lr = config["optimizer"]["lr"]
width = sum(config["layers"]) * config["model.width_scale"]
for epoch in range(1, config["epochs"] + 1):
    time.sleep(config["epoch_seconds"])
    val_loss = abs(math.log10(lr / 0.01)) + 1.0 / epoch + 1.0 / width
    wandb.log({"val/loss": val_loss, "epoch": epoch})
print(f"trained {config['epochs']} epochs")
wandb.finish()
