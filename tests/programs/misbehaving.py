"""A program that misbehaves as `--mode` says: `crash` logs one value of its metric and then fails, as a
training script that runs out of GPU memory does (exit code 1, the exception's line last on stderr and
W&B's own lines after it); `silent` logs another name than the sweep's metric; `fine` does as it should."""

import argparse

import wandb

mode = argparse.ArgumentParser()
mode.add_argument("--mode", choices=["crash", "silent", "fine"], required=True)
mode = mode.parse_args().mode
wandb.init()
print(f"epoch 1 done ({mode})")
wandb.log({"val_loss" if mode == "silent" else "val/loss": 0.5})
if mode == "crash":
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (a stand-in)")
wandb.finish()
