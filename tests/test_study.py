"""The Optuna study of a sweep, rebuilt from its record: every trial at its number with its outcome, the
interrupted ones given back first, an edit's unfitting trials kept out of what the sampler learns; the
driver's side of a fit (SweepRun) fed the results a Tune trial sends, without Ray. Optuna is real."""

import dataclasses
import io
import math

import optuna
import optuna.distributions as od
import pytest

from sweep.engine.study import open_study, outcome
from sweep.engine.sweep_run import FINISHED, SweepRun
from sweep.record.events import EventLog
from sweep.record.state import Status, read
from sweep.spec.load import load_spec
from sweep.spec.params import IndexedChoice, NormalQuantile, Param, WeightedChoice, same
from sweep.trials import reports, trials_of
from sweep.views.progress import ProgressView
from tests.helpers import epochs, write_record
from text_recognizer.config import Flag

SPACE = """\
method: bayes
metric: {name: val_acc, goal: maximize}
run: {data_class: MNISTSample, max_epochs: 4}
parameters:
  fc1: {values: [8, 16]}
  lr: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-1}
  dropout: {distribution: normal, mu: 0.3, sigma: 0.05}
search: {num_samples: 6, seed: 0}
early_stopping: {type: asha, grace_period: 1, reduction_factor: 2}
"""


def history(statuses: dict[int, str]) -> list[dict]:
    """Trials 0..n-1 with values 0.5 + number / 10; `statuses` ends them (an absent one was cut off)."""
    events = []
    for number in range(6):
        events.append({"event": "trial", "trial": number, "params": {"fc1": 8, "lr": 0.01 * (number + 1),
                                                                      "dropout": 0.3}})  # fmt: skip
        events += epochs(number, [0.4, 0.5 + number / 10][: 1 if statuses.get(number) == "stopped early" else 2])
        if number in statuses:
            events.append({"event": "end", "trial": number, "status": statuses[number], "reason": "", "summary": {}})
    return events


def study_of(experiment_dir, state):
    spec = load_spec(str(experiment_dir / "source.yaml"))
    return spec, open_study(experiment_dir, state, spec)


def test_the_rebuilt_study_holds_every_trial_at_its_number_and_gives_back_the_interrupted_first(tmp_path):
    statuses = {0: "completed", 1: "stopped early", 2: "failed", 3: "diverged", 5: "completed"}  # 4: cut off
    state = write_record(tmp_path / "s", SPACE, history(statuses))
    spec, study = study_of(tmp_path / "s", state)
    trials = study.get_trials(deepcopy=False)
    assert [(t.number, t.state.name) for t in trials] == [
        (0, "COMPLETE"), (1, "PRUNED"), (2, "FAIL"), (3, "PRUNED"), (4, "WAITING"), (5, "COMPLETE")]  # fmt: skip
    assert trials[0].value == 0.5 and trials[0].intermediate_values == {1: 0.4, 2: 0.5}
    assert trials[5].params["lr"] == pytest.approx(0.06) and trials[5].params["dropout"] == pytest.approx(0.5)
    assert study.ask().number == 4  # the interrupted trial, again, under its own number
    study_again = open_study(tmp_path / "s", state, spec)  # a second rebuild gives the same study
    assert [(t.number, t.state) for t in study_again.trials] == [(t.number, t.state) for t in trials]


def test_stopped_trials_are_pruned_or_complete_as_the_file_says(tmp_path):
    state = write_record(tmp_path / "s", SPACE, history({1: "stopped early"}))
    spec = load_spec(str(tmp_path / "s" / "source.yaml"))
    assert outcome(state.trials[1], spec) == (optuna.trial.TrialState.PRUNED, None)
    completed = spec.__class__(**{**spec.__dict__, "stopped_trials": "completed"})
    assert outcome(state.trials[1], completed) == (optuna.trial.TrialState.COMPLETE, 0.4)


def run_of(experiment_dir, spec, state):
    log = EventLog(experiment_dir, listener=state.apply)
    study = open_study(experiment_dir, state, spec)
    return SweepRun(spec, log, state, study, trials_of(spec), ProgressView(state, io.StringIO()))


def test_a_fit_asks_optuna_records_each_report_and_tells_optuna_how_each_trial_ended(tmp_path):
    """Two trials as Tune would run them: one trains to its end, one falls behind at epoch 1 and is
    stopped. Their reports come twice at the end (as Tune hands over the last one again)."""
    state = write_record(tmp_path / "s", SPACE, [])
    spec = load_spec(str(tmp_path / "s" / "source.yaml"))
    run = run_of(tmp_path / "s", spec, state)
    first, second = run.ask("a"), run.ask("b")
    assert (first["trial"], second["trial"]) == (0, 1) and set(first["params"]) == {"fc1", "lr", "dropout"}
    for trial_id, value in (("a", 0.9), ("b", 0.5)):
        report = reports.step(1, {"val_acc": value, "val_loss": 1 - value}, 0.1, "node")
        assert run.result(trial_id, report) == "" or trial_id == "b"
    assert run.stopped["b"].startswith("stopped at epoch 1: below the best 1/2 of the 1 trials")
    run.complete("b", reports.step(1, {"val_acc": 0.5, "val_loss": 0.5}, 0.1, "node"), error=False)
    for epoch, value in ((2, 0.92), (3, 0.93)):
        run.result("a", reports.step(epoch, {"val_acc": value, "val_loss": 0.1}, 0.1, "node"))
    last = reports.step(4, {"val_acc": 0.94, "val_loss": 0.1}, 0.1, "node")
    run.result("a", last)  # Tune's done=True copy of the last result: told once
    run.complete("a", last, error=False)
    again = read(tmp_path / "s", live=False)
    assert [(t.number, t.status, t.steps) for t in again.trials.values()] == [
        (0, Status.COMPLETED, 4), (1, Status.STOPPED, 1)]  # fmt: skip
    trials = run.study.get_trials(deepcopy=False)
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.94), ("PRUNED", 0.5)]  # its last value
    assert trials[0].intermediate_values == {1: 0.9, 2: 0.92, 3: 0.93, 4: 0.94}


def test_the_same_seed_gives_the_same_suggestions_and_a_resumed_sweep_new_ones(tmp_path):
    def first_three(name: str, seed: int, events=()) -> list[dict]:
        state = write_record(tmp_path / name, SPACE.replace("seed: 0", f"seed: {seed}"), list(events))
        spec = load_spec(str(tmp_path / name / "source.yaml"))
        run = run_of(tmp_path / name, spec, state)
        return [run.ask(str(i))["params"] for i in range(3)]

    assert first_three("a", 0) == first_three("b", 0) != first_three("c", 1)
    resumed = first_three("d", 0, history({n: "completed" for n in range(3)}))  # 3 trials ended: 3 new ones
    assert resumed[0] not in first_three("e", 0)


def test_a_fit_asks_no_trial_past_its_count_or_its_target(tmp_path):
    space = SPACE.replace("goal: maximize}", "goal: maximize, target: 0.6}").replace("num_samples: 6", "num_samples: 3")
    state = write_record(tmp_path / "s", space, [])
    spec = load_spec(str(tmp_path / "s" / "source.yaml"))
    run = run_of(tmp_path / "s", spec, state)
    run.ask("a")
    run.result("a", reports.step(1, {"val_acc": 0.7, "val_loss": 0.3}, 0.1, "n"))  # reaches 0.6
    assert run.ask("b") == FINISHED


def test_a_grid_runs_each_point_once_in_wandbs_order_and_an_edit_runs_the_new_points(tmp_path):
    grid = "method: grid\nrun: {max_epochs: 2}\nparameters: {lr: {values: [0.1, 0.01]}, fc1: {values: [8, 16]}}\n"
    state = write_record(tmp_path / "s", grid + "run_cap: 5\n", [])
    spec = load_spec(str(tmp_path / "s" / "source.yaml"))
    assert (spec.metric, spec.num_samples) == (None, 4)  # W&B's grid ends once every point has run
    assert "5 is above the grid's 4 points: 4 trials, each point once, as in W&B" in spec.warnings[0]
    run = run_of(tmp_path / "s", dataclasses.replace(spec, num_samples=5), state)
    asked = [run.ask(str(i)) for i in range(5)]
    assert [a["params"] for a in asked[:4]] == [{"fc1": 8, "lr": 0.1}, {"fc1": 8, "lr": 0.01}, {"fc1": 16, "lr": 0.1},
                                                {"fc1": 16, "lr": 0.01}]  # fmt: skip  # parameters in name order
    assert asked[4] == FINISHED
    for i in range(4):
        run.log.write("end", trial=i, status="completed", reason="", summary={})
    # An edit drops lr 0.01 and adds fc1 32 and lr 0.5: the points no trial ran, and no more.
    (tmp_path / "edited.yaml").write_text(grid.replace("[0.1, 0.01]", "[0.1, 0.5]").replace("[8, 16]", "[8, 16, 32]"))
    edited = load_spec(str(tmp_path / "edited.yaml"))
    run = run_of(tmp_path / "s", edited, state)
    assert run.to_run == 4 and [run.ask(str(i)) for i in range(5)][4] == FINISHED
    assert [(state.trials[n].params["fc1"], state.trials[n].params["lr"]) for n in range(4, 8)] == [
        (8, 0.5), (16, 0.5), (32, 0.1), (32, 0.5)]  # fmt: skip


def test_an_edited_space_learns_only_from_the_trials_it_could_have_asked(tmp_path):
    state = write_record(tmp_path / "s", SPACE, history({n: "completed" for n in range(6)}))  # lr 0.01 ... 0.06
    edited = SPACE.replace("min: 1.0e-3, max: 1.0e-1", "min: 3.5e-2, max: 1.0e-1")
    (tmp_path / "edited.yaml").write_text(edited)
    spec = load_spec(str(tmp_path / "edited.yaml"))
    study = open_study(tmp_path / "s", state, spec)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and [t.state.name for t in trials[:3]] == ["FAIL"] * 3  # lr 0.01-0.03: outside
    assert all(t.params == {} and t.user_attrs["outside_space"] for t in trials[:3])
    assert [t.state.name for t in trials[3:]] == ["COMPLETE"] * 3 and trials[3].params["lr"] == pytest.approx(0.04)


def test_every_value_a_parameter_gives_maps_back_to_a_sample_that_gives_it_again():
    """`sample_of` is how a rebuilt, edited or warm-started study holds the values that trials ran with."""
    number_flag, integer_flag, any_flag = (
        Flag("x", float, None, "p"),
        Flag("n", int, None, "p"),
        Flag("c", object, None, "p"),
    )
    params = [
        Param(number_flag, od.FloatDistribution(1e-4, 1e-1, log=True), "s"),
        Param(integer_flag, od.FloatDistribution(64, 2048, log=True), "s", q=32),
        Param(number_flag, od.FloatDistribution(0, 1), "s", from_quantile=NormalQuantile(0, 1, False)),
        Param(number_flag, od.FloatDistribution(0, 1), "s", from_quantile=NormalQuantile(0, 1, True), q=0.5),
        Param(any_flag, od.FloatDistribution(0, 1), "s", from_quantile=WeightedChoice(("a", "b", 3), (0.2, 0.2, 1.0))),
        Param(integer_flag, od.IntDistribution(2, 10, step=2), "s"),
        Param(number_flag, od.FloatDistribution(0.2, 0.8, step=0.2), "s", q=0.2),
        Param(any_flag, od.CategoricalDistribution([1, True, "x"]), "s"),
        Param(any_flag, od.CategoricalDistribution([0, 1]), "s", from_quantile=IndexedChoice(([1], {"a": 2}))),
    ]
    for param in params:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(200):
            value = param.value(study.ask({"p": param.distribution}).params["p"])
            again = param.value(param.sample_of(value))
            assert same(again, value) or math.isclose(again, value, rel_tol=1e-9), (param, value, again)
    assert params[1].sample_of(100) is None and params[1].sample_of(96) == 96.0  # not a multiple of q: not given
    assert params[0].sample_of(0.5) is None and params[4].sample_of("b") is None  # out of range; probability 0
    assert params[7].sample_of(1) == 1 and params[7].sample_of(True) is True  # 1 is not True
