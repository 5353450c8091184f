"""A stand-in for a training script that reads W&B's `${args}` (`--name=value`) with argparse, as yolov5's
and many others do, and logs with `wandb.log(..., step=epoch)`: W&B commits a step once a later one comes."""

import argparse
import ast
import json
import os

import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--batch_size", type=int, required=True)
parser.add_argument("--augment", type=lambda text: {"True": True, "False": False}[text], required=True)
parser.add_argument("--layers", type=ast.literal_eval, required=True)  # W&B writes a list as [64, 64]
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()
wandb.init(config=vars(args))
with open(os.path.join(os.environ["WANDB_DIR"], "seen.json"), "w") as f:
    json.dump(vars(args), f)
for epoch in range(args.epochs):
    wandb.log({"accuracy": 0.5 + 0.1 * epoch + (0.05 if args.augment else 0)}, step=epoch)
    wandb.log({"train_loss": 1.0 / (epoch + 1)}, step=epoch)  # the same step: one row
wandb.finish()
