"""Train one model on one dataset: the Lab 1 command line, on Lightning 2.

    python training/run_experiment.py --model_class=MLP --data_class=MNISTSample --max_epochs=5
    python training/run_experiment.py --config runs/quickstart/best_config.yaml   # rerun a sweep's best trial

Data, model and lit-model flags come from the classes' constructor signatures (see text_recognizer/config.py).
The last line printed is `val_acc=... test_acc=...`.
"""

from __future__ import annotations

import argparse
import sys

from text_recognizer.config import HELP, Flag, flag_schema, resolve_config
from text_recognizer.training import train
from text_recognizer.util import OneLineParser, UserError, load_yaml_mapping

GROUP_TITLES = {
    "experiment": "experiment",
    "data": "data (the data class's arguments)",
    "model": "model (the model class's arguments)",
    "lit_model": "lit model (training logic)",
    "trainer": "trainer",
}


def converter(flag: Flag):
    def convert(raw: str):
        return flag.from_string(raw)

    convert.__name__ = flag.type_name  # argparse names it in "invalid <type> value"
    return convert


def build_parser(data_class: str, model_class: str) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="run_experiment.py",
        description="Train a model from text_recognizer on a dataset, save its best checkpoint, test it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config", help="a YAML of flags (such as a sweep's best_config.yaml); flags on the command line override it"
    )
    groups = {}
    for flag in flag_schema(data_class, model_class).values():
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(GROUP_TITLES[flag.group])
        bare = {"nargs": "?", "const": True} if bool in flag.options else {}  # --wandb alone means true
        groups[flag.group].add_argument(
            f"--{flag.name}",
            type=converter(flag),
            default=flag.default,
            help=HELP.get(flag.name, flag.type_name),
            **bare,
        )
    return parser


def parse_config(argv: list[str] | None = None) -> dict:
    """Flags (over --config, over defaults) -> a resolved run config."""
    first = OneLineParser(prog="run_experiment.py", add_help=False)
    for name in ("--config", "--data_class", "--model_class"):
        first.add_argument(name)
    known, _ = first.parse_known_args(argv)
    from_file = resolve_config(load_yaml_mapping(known.config), known.config) if known.config else {}
    parser = build_parser(
        known.data_class or from_file.get("data_class", "MNIST"),
        known.model_class or from_file.get("model_class", "MLP"),
    )
    parser.set_defaults(**from_file)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return resolve_config(args, "the command line")


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        metrics = train(config, output_dir=config["output_dir"])
    except UserError as exc:
        print(f"run_experiment.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"best checkpoint: {metrics['checkpoint']}")
    print(f"val_acc={metrics['val_acc']:.4f} test_acc={metrics['test_acc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
