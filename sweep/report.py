"""`write_report(experiment_dir)`: report.html (one file, offline) and PNGs of a sweep, mid-sweep or after.

The plots are Optuna's (`optuna.visualization`, plotly for the HTML, its matplotlib twins for the PNGs),
drawn over an in-memory study of the trials *as they ran*, built from our records (results.csv, epochs.csv,
sweep.yaml): every trial that reported a metric, with its best epoch's value, the values it ran with
(q-rounded, not Optuna's raw samples), and its per-epoch values. Optuna's own study would leave out the
trials ASHA stopped, which Optuna's history and parallel-coordinate plots skip as pruned.
"""

from __future__ import annotations

import csv
import html
import json
import math
import warnings
from pathlib import Path

import optuna
import yaml

from sweep.files import EPOCHS_CSV, REPORT_HTML, SPEC_FILE, best_row, format_cell, read_results, write_atomically
from text_recognizer.util import UserError

LEGEND_TRIALS = 20  # a legend of more trials than this hides the plot (the HTML has hover labels instead)
PLOTS = {  # id: title; each is drawn as report.html's <div id=...> and as <id>.png
    "history": "Optimisation history: each trial's best epoch, and the best so far",
    "parallel-coordinates": "Parallel coordinates: the parameters against the metric",
    "importance": "Parameter importance (fANOVA)",
    "learning-curves": "Learning curves: the metric per epoch of every trial (early stops end early)",
}


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def as_optuna_value(value):
    """A parameter's value as Optuna can hold it: a program's list or mapping as its text."""
    return format_cell(value) if isinstance(value, (list, dict)) else value


def as_ran_distribution(distribution, values: list) -> optuna.distributions.BaseDistribution:
    """Optuna's distribution if it holds the values that ran; else one that spans them (a q-rounded or
    normal value is not one of Optuna's raw samples)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution) and all(
        v in distribution.choices for v in values
    ):
        return distribution
    if all(isinstance(v, (int, float)) for v in values):
        low, high = min(values), max(values)
        return optuna.distributions.FloatDistribution(low, high, log=getattr(distribution, "log", False) and low > 0)
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))


def study_as_ran(spec: dict, rows: list[dict], epochs: list[dict]) -> tuple[optuna.Study, list[dict]]:
    """An in-memory study of the trials that reported the metric, numbered in their start order, and
    those trials' rows."""
    metric = spec["metric"]
    rows = [row for row in rows if row[metric] is not None and math.isfinite(row[metric])]
    curves: dict[str, dict[int, float]] = {}
    for line in epochs:
        value = float(line[metric])
        if math.isfinite(value):
            curves.setdefault(line["trial_id"], {})[int(line["epoch"])] = value
    values = {name: [as_optuna_value(row[name]) for row in rows] for name in spec["params"]}
    distributions = {
        name: as_ran_distribution(optuna.distributions.json_to_distribution(json.dumps(param["optuna"])), values[name])
        for name, param in spec["params"].items()
        if values[name]
    }
    study = optuna.create_study(direction="maximize" if spec["mode"] == "max" else "minimize")
    for i, row in enumerate(rows):
        study.add_trial(
            optuna.trial.create_trial(
                params={name: values[name][i] for name in distributions},
                distributions=distributions,
                value=row[metric],
                intermediate_values=curves.get(row["trial_id"], {}),
                user_attrs={"trial_id": row["trial_id"], "status": row["status"]},
            )
        )
    return study, rows


def plotly_figures(study: optuna.Study, rows: list[dict], metric: str) -> dict:
    import optuna.visualization as ov
    import plotly.graph_objects as go

    figures = {"history": ov.plot_optimization_history(study, target_name=metric)}
    stopped = [t for t in study.trials if t.user_attrs["status"] != "completed"]
    if stopped:  # Optuna's plot has one marker for every trial: say which ones did not train to the end
        figures["history"].add_trace(
            go.Scatter(
                x=[t.number for t in stopped],
                y=[t.value for t in stopped],
                mode="markers",
                marker={"symbol": "x", "size": 9, "color": "#d62728"},
                name="stopped early or cut off",
                text=[f"trial {t.user_attrs['trial_id']}: {t.user_attrs['status']}" for t in stopped],
            )
        )
    figures["parallel-coordinates"] = ov.plot_parallel_coordinate(study, target_name=metric)
    if len(rows) >= 2:
        figures["importance"] = ov.plot_param_importances(study, target_name=metric)
    figures["learning-curves"] = ov.plot_intermediate_values(study)
    figures["learning-curves"].update_layout(xaxis_title="epoch", yaxis_title=metric)
    trial_ids = {f"Trial{t.number}": t.user_attrs["trial_id"] for t in study.trials}
    for curve in figures["learning-curves"].data:  # which line is which trial: its name, hover and legend
        curve.name = f"#{curve.name.removeprefix('Trial')} {trial_ids.get(curve.name, '')}"
        curve.hovertemplate = f"{curve.name}<br>epoch %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>"
        curve.showlegend = len(rows) <= LEGEND_TRIALS
    for name, figure in figures.items():
        figure.update_layout(title=PLOTS[name])
    return figures


def write_pngs(study: optuna.Study, rows: list[dict], metric: str, experiment_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files, not a window
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as om

    draw = {
        "history": lambda: om.plot_optimization_history(study, target_name=metric),
        "parallel-coordinates": lambda: om.plot_parallel_coordinate(study, target_name=metric),
        "importance": lambda: om.plot_param_importances(study, target_name=metric),
        "learning-curves": lambda: om.plot_intermediate_values(study),
    }
    if len(rows) < 2:
        del draw["importance"]
    written = []
    for name, plot in draw.items():
        ax = plot()
        if name == "history":
            stopped = [t for t in study.trials if t.user_attrs["status"] != "completed"]
            ax.scatter(
                [t.number for t in stopped],
                [t.value for t in stopped],
                marker="x",
                color="#d62728",
                label="stopped early or cut off",
                zorder=3,
            )
            ax.legend()
        if name == "learning-curves":
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            if len(rows) > LEGEND_TRIALS and ax.get_legend() is not None:
                ax.get_legend().remove()
        ax.set_title(PLOTS[name], fontsize=10)
        path = experiment_dir / f"{name}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(path)
    return written


def table_cell(key: str, value, spec: dict) -> str:
    """A results.csv value as the terminal shows it: 3 significant digits of a parameter, the metric as
    in the trial lines, the Ray node's first 8 characters."""
    if value is None:
        return ""
    if key in spec["params"]:
        return f"{value:.3g}" if isinstance(value, float) else format_cell(value)
    if key in spec["metrics"]:
        return f"{value:.4g}" if spec.get("program") else f"{value:.4f}"
    if key == "node":
        return value[:8]
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table_html(rows: list[dict], numbers: dict[str, int], spec: dict) -> str:
    if not rows:
        return "<p>No trial has ended yet.</p>"
    columns = [column for column in rows[0] if column != "start_time"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *columns])
    body = "".join(
        f"<tr><td>{numbers.get(row['trial_id'], '')}</td>"
        + "".join(f"<td>{html.escape(table_cell(column, row[column], spec))}</td>" for column in columns)
        + "</tr>"
        for row in rows
    )
    return f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(experiment_dir: str | Path) -> tuple[Path, list[Path]]:
    """report.html and the PNGs, written into the experiment directory; returns their paths."""
    from plotly.offline import get_plotlyjs

    experiment_dir = Path(experiment_dir)
    spec_path = experiment_dir / SPEC_FILE
    if not spec_path.exists():
        raise UserError(f"{spec_path}: no such file; is {experiment_dir} a sweep's experiment directory?")
    spec = yaml.safe_load(spec_path.read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    metric = spec["metric"]
    all_rows = read_results(experiment_dir, spec)
    study, rows = study_as_ran(spec, all_rows, read_csv(experiment_dir / EPOCHS_CSV))
    numbers = {row["trial_id"]: i for i, row in enumerate(rows)}
    sections = []
    pngs = []
    if rows:
        with warnings.catch_warnings():  # the matplotlib twins are "experimental"; and few trials give
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # flat axes, which
            warnings.simplefilter("ignore", UserWarning)  # matplotlib warns of, and draws well enough
            figures = plotly_figures(study, rows, metric)
            pngs = write_pngs(study, rows, metric, experiment_dir)
        for name, figure in figures.items():
            sections.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=name))
        if "importance" not in figures:
            sections.append("<p>Parameter importance needs at least 2 trials with a result.</p>")
    best = best_row(all_rows, metric, spec["mode"])  # as best_config.yaml's
    headline = f"no trial has reported {metric} yet"
    if best is not None:
        headline = f"best {metric} {table_cell(metric, best[metric], spec)}, trial {best['trial_id']}"
    title = f"Sweep {spec['name']}: {len(all_rows)} of {spec['num_samples']} trials, {headline}"
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        f"<script>{get_plotlyjs()}</script></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(str(experiment_dir))}; plots number trials in their start order (the table's #).</p>"
        + "".join(sections)
        + f"<h2>Trials</h2>{table_html(all_rows, numbers, spec)}</body></html>"
    )
    report = experiment_dir / REPORT_HTML
    write_atomically(report, page)
    return report, pngs
