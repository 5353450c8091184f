"""A stand-in for a Hydra application swept with W&B's `${args_no_hyphens}`: dotted `key=value` overrides
on the command line (Hydra itself is not needed to read them), metrics printed as name=value lines."""

import json
import os
import sys

overrides = dict(argument.split("=", 1) for argument in sys.argv[1:])
with open(os.path.join(os.environ["WANDB_DIR"], "seen.json"), "w") as f:
    json.dump(sys.argv[1:], f)
lr = float(overrides["model.lr"])
for epoch in range(3):
    print(f"val.acc={min(0.99, 0.5 + epoch * lr * 10)} trainer.epoch={epoch}")
