"""A W&B program that logs through TensorBoard (`wandb.init(sync_tensorboard=True)`), with tensorboardX's or
torch's SummaryWriter (`--writer`): one writer in its default directory (runs/DATE_HOST, under the working
directory), or two writers, train/ and val/ under $WANDB_DIR/tb, whose tags W&B prefixes with train/ and val/."""

import argparse
import os

import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--writer", choices=["tensorboardX", "torch"], required=True)
parser.add_argument("--dirs", choices=["default", "train_val"], required=True)
args = parser.parse_args()
run = wandb.init(sync_tensorboard=True)
if args.writer == "torch":
    from torch.utils.tensorboard import SummaryWriter
else:
    from tensorboardX import SummaryWriter

if args.dirs == "default":
    writer = SummaryWriter()
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)  # 1/3: a 32-bit float in the event file
        writer.add_scalar("acc", step / 10, step)  # the same step: the same W&B row
    writer.add_scalar("late", 5, 10)
    writer.close()
else:
    root = os.path.join(os.environ["WANDB_DIR"], "tb")
    train, val = SummaryWriter(os.path.join(root, "train")), SummaryWriter(os.path.join(root, "val"))
    for step in range(2):
        train.add_scalar("loss", 1.0 / (step + 1), step)
        val.add_scalar("loss", 2.0 / (step + 1), step)
    train.close()
    val.close()
    run.log({"direct": 1.0}, step=100)  # W&B ignores the step while it syncs TensorBoard
run.finish()
