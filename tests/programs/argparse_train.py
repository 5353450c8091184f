"""A stand-in for a training script that reads W&B's `${args}` (`--name=value`) with argparse, as yolov5's
and many others do. It prints its metrics as name=value lines (what W&B makes of wandb.log calls is
tested in test_program_run.py, against W&B itself)."""

import argparse
import ast
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--batch_size", type=int, required=True)
parser.add_argument("--augment", type=lambda text: {"True": True, "False": False}[text], required=True)
parser.add_argument("--layers", type=ast.literal_eval, required=True)  # W&B writes a list as [64, 64]
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()
with open(os.path.join(os.environ["WANDB_DIR"], "seen.json"), "w") as f:
    json.dump(vars(args), f)
for epoch in range(args.epochs):
    print(f"accuracy={0.5 + 0.1 * epoch + (0.05 if args.augment else 0)} train_loss={1.0 / (epoch + 1)}")
