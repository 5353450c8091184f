"""`write_report(experiment_dir)`: report.html (one file, offline) and PNGs of a sweep, mid-sweep or after,
from its record.

The plots are Optuna's (`optuna.visualization`, plotly for the HTML, its matplotlib twins for the PNGs),
drawn over an in-memory study of the trials *as they ran*: every trial that reported a metric, with its
value, the values it ran with (q-rounded, not Optuna's raw samples) and its per-step values. Trials from a
warm start are drawn too, marked, and each edit of the sweep is a line where it took effect.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path

import optuna

from sweep.record.files import REPORT_HTML, write_atomically
from sweep.record.state import Status, SweepState, Trial, read
from sweep.views.exports import results_rows

LEGEND_TRIALS = 20  # a legend of more trials than this hides the plot (the HTML has hover labels instead)
PLOTS = {  # id: title; each is drawn as report.html's <div id=...> and as <id>.png
    "history": "Optimisation history: each trial's value, and the best so far",
    "parallel-coordinates": "Parallel coordinates: the parameters against the metric",
    "importance": "Parameter importance (fANOVA)",
    "learning-curves": "Learning curves: the metric per step of every trial (early stops end early)",
}


def as_optuna_value(value):
    """A parameter's value as Optuna can hold it: a program's list or mapping as its text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def as_ran_distribution(distribution, values: list) -> optuna.distributions.BaseDistribution:
    """Optuna's distribution if it holds the values that ran; else one that spans them (a q-rounded or
    normal value is not one of Optuna's raw samples, and an edit may have moved a range)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution) and all(
        v in distribution.choices for v in values
    ):
        return distribution
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        return optuna.distributions.FloatDistribution(low, high, log=getattr(distribution, "log", False) and low > 0)
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))


UNPLOTTED = (Status.FAILED, Status.DIVERGED)


def study_as_ran(state: SweepState) -> tuple[optuna.Study, list[Trial]]:
    """An in-memory study of the trials that have a value (warm-start history first), by number; not the
    failed or diverged ones, which are never the best either."""
    metric, mode, spec = state.metric, state.mode, state.spec
    trials = [t for t in sorted([*state.warm.values(), *state.trials.values()], key=lambda t: t.number)
              if t.value(metric, mode) is not None and t.status not in UNPLOTTED]  # fmt: skip
    values = {name: [as_optuna_value(t.params.get(name)) for t in trials] for name in spec["params"]}
    distributions = {
        name: as_ran_distribution(optuna.distributions.json_to_distribution(json.dumps(param["optuna"])), values[name])
        for name, param in spec["params"].items()
        if values[name] and None not in values[name]
    }
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for i, trial in enumerate(trials):
        study.add_trial(
            optuna.trial.create_trial(
                params={name: values[name][i] for name in distributions},
                distributions=distributions,
                value=trial.value(metric, mode),
                intermediate_values=trial.curve(metric),
                user_attrs={"trial": trial.number, "status": trial.status.value, "warm": bool(trial.origin)},
            )
        )
    return study, trials


def marked(study: optuna.Study) -> dict[str, list]:
    """The plotted trials that did not train to their end, and those from a warm start."""
    return {
        "stopped early or cut off": [t for t in study.trials if t.user_attrs["status"] != Status.COMPLETED.value],
        "warm start (an earlier sweep's)": [t for t in study.trials if t.user_attrs["warm"]],
    }


def edit_positions(state: SweepState, study: optuna.Study) -> list[tuple[int, str]]:
    """Where each edit took effect on the history plot's axis: before the first trial asked after it."""
    positions = []
    for edit in state.edits:
        after = [t.number for t in study.trials if t.user_attrs["trial"] >= edit["next_trial"]]
        positions.append((min(after) if after else len(study.trials), "; ".join(edit["changes"]) or "edited"))
    return positions


def plotly_figures(state: SweepState, study: optuna.Study) -> dict:
    import optuna.visualization as ov
    import plotly.graph_objects as go

    metric = state.metric
    figures = {"history": ov.plot_optimization_history(study, target_name=metric)}
    for (name, trials), (symbol, color) in zip(marked(study).items(), (("x", "#d62728"), ("diamond-open", "#7f7f7f")),
                                               strict=True):  # fmt: skip
        if trials:
            figures["history"].add_trace(
                go.Scatter(x=[t.number for t in trials], y=[t.value for t in trials], mode="markers", name=name,
                           marker={"symbol": symbol, "size": 10, "color": color},
                           text=[f"trial {t.user_attrs['trial']}: {t.user_attrs['status']}" for t in trials])
            )  # fmt: skip
    for position, changes in edit_positions(state, study):
        figures["history"].add_vline(x=position - 0.5, line_dash="dash", annotation_text=f"edit: {changes}"[:80])
    figures["parallel-coordinates"] = ov.plot_parallel_coordinate(study, target_name=metric)
    if len(study.trials) >= 2 and study.trials[0].params:
        figures["importance"] = ov.plot_param_importances(study, target_name=metric)
    figures["learning-curves"] = ov.plot_intermediate_values(study)
    figures["learning-curves"].update_layout(xaxis_title=state.spec["unit"], yaxis_title=metric)
    numbers = {f"Trial{t.number}": t.user_attrs["trial"] for t in study.trials}
    for curve in figures["learning-curves"].data:  # which line is which trial: its name, hover and legend
        curve.name = f"trial {numbers.get(curve.name, curve.name)}"
        curve.hovertemplate = f"{curve.name}<br>{state.spec['unit']} %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>"
        curve.showlegend = len(study.trials) <= LEGEND_TRIALS
    for name, figure in figures.items():
        figure.update_layout(title=PLOTS[name])
    return figures


def write_pngs(state: SweepState, study: optuna.Study, experiment_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files, not a window
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as om

    metric = state.metric
    draw = {
        "history": lambda: om.plot_optimization_history(study, target_name=metric),
        "parallel-coordinates": lambda: om.plot_parallel_coordinate(study, target_name=metric),
        "importance": lambda: om.plot_param_importances(study, target_name=metric),
        "learning-curves": lambda: om.plot_intermediate_values(study),
    }
    if len(study.trials) < 2 or not study.trials[0].params:
        del draw["importance"]
    written = []
    for name, plot in draw.items():
        ax = plot()
        if name == "history":
            for (label, trials), (symbol, color) in zip(marked(study).items(), (("x", "#d62728"), ("D", "#7f7f7f")),
                                                        strict=True):  # fmt: skip
                if trials:
                    ax.scatter([t.number for t in trials], [t.value for t in trials], marker=symbol, color=color,
                               label=label, zorder=3, facecolors="none" if symbol == "D" else None)  # fmt: skip
            for position, changes in edit_positions(state, study):
                ax.axvline(position - 0.5, linestyle="--", color="#555555", label=f"edit: {changes}"[:60])
            ax.legend()
        if name == "learning-curves":
            ax.set_xlabel(state.spec["unit"])
            ax.set_ylabel(metric)
            if len(study.trials) > LEGEND_TRIALS and ax.get_legend() is not None:
                ax.get_legend().remove()
        ax.set_title(PLOTS[name], fontsize=10)
        path = experiment_dir / f"{name}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(path)
    return written


def table_cell(key: str, value, state: SweepState) -> str:
    """A value as the terminal shows it: 3 significant digits of a parameter, 4 of a metric, the Ray node's
    first 8 characters."""
    if value is None:
        return ""
    if key in state.spec["params"]:
        return f"{value:.3g}" if isinstance(value, float) else str(as_optuna_value(value))
    if key == "node":
        return value[:8]
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table_html(state: SweepState) -> str:
    rows = results_rows(state)
    warm = [{"trial": t.number, "status": f"warm start: {t.origin}", **t.params} for t in state.warm.values()]
    if not rows and not warm:
        return "<p>No trial has started yet.</p>"
    columns = [c for c in (rows or warm)[0] if c != "start"] if rows else list(warm[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr{' class=warm' if row in warm else ''}>"
        + "".join(f"<td>{html.escape(table_cell(c, row.get(c), state))}</td>" for c in columns)
        + "</tr>"
        for row in [*warm, *rows]
    )
    return f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(experiment_dir: str | Path, state: SweepState | None = None) -> tuple[Path, list[Path]]:
    """report.html and the PNGs, written into the experiment directory; returns their paths."""
    from plotly.offline import get_plotlyjs

    experiment_dir = Path(experiment_dir)
    state = state or read(experiment_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    sections, pngs = [], []
    study, plotted = study_as_ran(state) if state.metric else (None, [])
    if plotted:
        with warnings.catch_warnings():  # the matplotlib twins are "experimental"; and few trials give
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # flat axes, which
            warnings.simplefilter("ignore", UserWarning)  # matplotlib warns of, and draws well enough
            figures = plotly_figures(state, study)
            pngs = write_pngs(state, study, experiment_dir)
        for name, figure in figures.items():
            sections.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=name))
        if "importance" not in figures:
            sections.append("<p>Parameter importance needs at least 2 trials with a result.</p>")
    elif not state.metric:
        sections.append("<p>This sweep has no metric: every trial ran, none is the best. The table lists what "
                        "each logged.</p>")  # fmt: skip
    best = state.best()
    headline = f"no trial has reported {state.metric} yet" if state.metric else "no metric"
    if best is not None:
        headline = f"best {state.metric} {table_cell(state.metric, best.value(state.metric, state.mode), state)}, " \
                   f"trial {best.number}"  # fmt: skip
    title = f"Sweep {state.spec['name']}: {len(state.trials)} of {state.num_samples} trials, {headline}"
    notes = [f"{experiment_dir}; plots number trials in their order (trial numbers in hover labels and the table)."]
    if unplotted := sum(t.status in UNPLOTTED for t in state.trials.values()):
        notes.append(f"{unplotted} failed or diverged trials are in the table only, not in the plots.")
    if state.warm:
        notes.append(f"{len(state.warm)} trials come from a warm start: earlier sweeps' history, not this sweep's.")
    notes += [
        f"Edited before trial {e['next_trial']}: {'; '.join(e['changes']) or 'nothing changed'}." for e in state.edits
    ]
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}tr.warm{color:#777}</style>"
        f"<script>{get_plotlyjs()}</script></head><body><h1>{html.escape(title)}</h1>"
        + "".join(f"<p>{html.escape(note)}</p>" for note in notes)
        + "".join(sections)
        + f"<h2>Trials</h2>{table_html(state)}</body></html>"
    )
    report = experiment_dir / REPORT_HTML
    write_atomically(report, page)
    return report, pngs
