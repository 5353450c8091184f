"""Programs run as W&B's agent runs them: the command line against W&B's own code, the sweep files of real
projects' shapes, what is read from a program (wandb.log, name=value lines), and its process group ended
whatever it does. Real processes and the real `wandb` package; no Ray here (see test_program_sweeps)."""

import json
import subprocess

import pytest
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from sweep.spec.command import ARGUMENT_MACROS, Program, argument_formats
from sweep.spec.load import load_spec
from tests.helpers import ROOT, SWEEP, ray_watch
from text_recognizer.util import UserError

VALUES = {
    "lr": 1e-05,
    "batch_size": 64,
    "augment": True,
    "shuffle": False,
    "scheduler": None,
    "layers": [64, 64],
    "optimizer": {"name": "adam", "betas": [0.9, 0.99]},
    "model.width": 0.5,
    "name": "two words",
}


def test_arguments_are_formatted_exactly_as_wandbs_agent_formats_them():
    ours = argument_formats(VALUES)
    wandbs = create_sweep_command_args({"args": {name: {"value": value} for name, value in VALUES.items()}})
    for macro in ARGUMENT_MACROS:
        if macro != "args_json_file":  # W&B's agent writes args_json into a file for this one
            assert ours[macro] == wandbs[macro], macro
    assert ours["args"][:2] == ["--lr=1e-05", "--batch_size=64"] and "--augment" in ours["args_no_boolean_flags"]


def test_every_macro_expands_and_literal_arguments_stay_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    command = ("${env}", "${interpreter}", "${program}", "--seed", "3", "${envvar:DATA_ROOT}/mnist",
               "${args_json_file}", "${args_no_hyphens}")  # fmt: skip
    prog = Program(path="train.py", command=command, cwd=str(tmp_path))
    line = prog.command_line({"lr": 0.1, "layers": [1, 2]}, tmp_path / "args.json", interpreter="/venv/bin/python")
    assert line == ["/usr/bin/env", "/venv/bin/python", "train.py", "--seed", "3", "/data/mnist",
                    str(tmp_path / "args.json"), "lr=0.1", "layers=[1, 2]"]  # fmt: skip
    assert json.loads((tmp_path / "args.json").read_text()) == {"lr": 0.1, "layers": [1, 2]}


def test_nested_parameters_reach_the_program_as_mappings_ordered_as_wandb_orders_them():
    spec = load_spec(str(ROOT / "tests/spaces/program_wandb.yaml"), cwd=str(ROOT))
    assert set(spec.params) == {"optimizer.lr", "layers", "model.width_scale"}  # Optuna's names
    args = spec.trial_config({"optimizer.lr": 0.01, "layers": [128], "model.width_scale": 2})
    assert args == {"epoch_seconds": 0.3, "epochs": 6, "layers": [128], "model.width_scale": 2,
                    "optimizer": {"lr": 0.01, "name": "adam"}, "stubborn": True}  # fmt: skip
    assert list(args) == sorted(args)
    assert spec.params["layers"].value(1) == [128]  # a list: Optuna samples its index


@pytest.mark.parametrize(
    "text, problem",
    [
        ("program: nowhere.py", "key 'program': nowhere.py is not a file in"),
        ("program: tests/programs/train.sh\ncommand: [bash, '${program}', '${argz}']", "${argz} is no macro"),
        ("command: [python, '${program}']", "key 'command': ${program} needs 'program'"),
        ("job: entity/project/job:v1", "key 'job': a W&B Launch job runs on W&B's launch queues"),
        ("program: tests/programs/train.sh\nrun: {epochs: 3}", "key 'run': sets flags of training/run_experiment.py"),
        ("program: tests/programs/train.sh\nmetric: {goal: minimize}", "key 'metric.name': required in 'metric': name"),
        ("program: tests/programs/train.sh\nmetric: {name: loss, goal: maximise loss}", "expected maximize or min"),
        (
            "program: tests/programs/train.sh\nmetric: {name: loss}\nparameters:\n  lr:\n    min: 0.1\n    max: 1\n"
            "    epochs:\n      values: [1, 2]",
            "key 'parameters.lr.epochs': distribution uniform takes min and max, not 'epochs' (a parameter "
            "indented into this one by mistake?)",
        ),
        (
            "program: tests/programs/train.sh\nmetric: {name: loss}\n"
            "parameters: {a.b: {values: [1]}, a: {parameters: {b: {values: [2]}}}}",
            "'a.b' is also the name of a nested parameter",
        ),
        (
            "program: training/run_experiment.py\ncommand: ['${env}', python, '${program}', --wandbb, '${args}']",
            "key 'command': '--wandbb' is no flag of training/run_experiment.py",
        ),
    ],
)
def test_what_wandb_would_refuse_is_one_line_naming_the_key(tmp_path, text, problem):
    path = tmp_path / "sweep.yaml"
    text = f"method: random\n{text}" if "job:" not in text else text  # W&B requires method (a job is refused first)
    path.write_text(text + ("\nparameters: {lr: {values: [0.1]}}\n" if "parameters" not in text else "\n"))
    with pytest.raises(UserError) as error:
        load_spec(str(path), cwd=str(ROOT))
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and problem in message, message


def test_files_as_people_write_them(tmp_path):
    """1e-5 is the number a person means, a key given twice keeps YAML's meaning (the last) with a warning,
    and the FSDL labs' --wandb command runs our trainer in-process, logging to W&B."""
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "program: tests/programs/train.sh\nmetric: {name: loss}\nmethod: random\nmethod: grid\n"
        "parameters: {lr: {values: [1e-5, 3e-4, 1E+2]}}\n"
    )
    spec = load_spec(str(path), cwd=str(ROOT))
    assert spec.params["lr"].distribution.choices == (1e-5, 3e-4, 100.0) and spec.method == "grid"
    assert any("key 'method' is given again at line 4: the last value is used" in w for w in spec.warnings)
    fsdl = load_spec(str(ROOT / "tests/spaces/fsdl_lab.yaml"), cwd=str(ROOT))
    assert fsdl.program is None and fsdl.base_config["wandb"] is True and fsdl.metric == "val_loss"


def test_a_missing_program_is_one_line_before_ray_starts(tmp_path):
    space = tmp_path / "sweep.yaml"
    space.write_text("program: train.py\nmetric: {name: loss}\nmethod: random\nparameters: {lr: {values: [0.1]}}\n")
    env, ray_dir = ray_watch(tmp_path)
    run = subprocess.run([SWEEP, "run", str(space)], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == (
        f"sweep: error: {space}: key 'program': train.py is not a file in {tmp_path}, where trials run the command"
    )
    assert not ray_dir.exists()  # no Ray was started
