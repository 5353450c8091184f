"""python -m sweep {run,resume,best,final,validate,report,dashboard}: parse, call, print; errors: one line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import socket
import sys
import traceback
from datetime import datetime
from pathlib import Path

from sweep.cluster import RayStart
from text_recognizer.util import OneLineParser, UserError, load_yaml_mapping


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m sweep", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="run a sweep from a search-space YAML")
    run.add_argument("space", help="search-space YAML, e.g. search_spaces/quickstart.yaml")
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; 0.25 packs 4 trials on a GPU, 0 = CPU")
    run.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    run.add_argument("--num-samples", type=int, help="number of trials")
    run.add_argument(
        "--max-concurrent",
        type=int,
        help="at most this many trials at a time (default: as many as the resources allow)",
    )
    run.add_argument("--seed", type=int, help="searcher seed: the same seed gives the same suggestions")
    run.add_argument(
        "--checkpoint-interval",
        type=float,
        dest="checkpoint_interval_s",
        metavar="SECONDS",
        help="a trial saves a checkpoint at most this often, to continue from (default 60; 0: every epoch)",
    )
    run.add_argument("--max-failures", type=int, help="retries of a trial whose worker or node is lost (default 2)")
    run.add_argument("--address", help="an existing Ray cluster, e.g. 10.0.0.1:6379 or auto (default: a local Ray)")
    run.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="where the local Ray's dashboard listens (default 127.0.0.1; 0.0.0.0: every interface)",
    )
    run.add_argument("--storage-path", default="runs", help="where experiment directories go (default: runs)")
    run.add_argument("--name", help="experiment directory name (default: the YAML's name and the time)")
    run.add_argument("--final", action="store_true", help="after the sweep, train the best config and test it")
    run.add_argument("--verbose", action="store_true", help="every trial's own output in the terminal too")

    resume = commands.add_parser(
        "resume", help="continue a sweep whose driver ended (a kill, Ctrl-C, a reboot), or grow a finished one"
    )
    resume.add_argument("experiment_dir")
    resume.add_argument("--num-samples", type=int, help="grow the sweep to this many trials in all")
    resume.add_argument("--address", help="the Ray cluster to continue on (default: the one it ran on, or a local Ray)")
    resume.add_argument("--verbose", action="store_true", help="every trial's own output in the terminal too")

    best = commands.add_parser("best", help="print the best config and the results table of a sweep")
    best.add_argument("experiment_dir")

    final = commands.add_parser("final", help="train a sweep's best config from scratch and test it")
    final.add_argument("experiment_dir")
    final.add_argument("--max_epochs", "--max-epochs", type=int, help="override the sweep's max_epochs")

    validate = commands.add_parser("validate", help="check search-space YAMLs without Ray (exit 1 if one is bad)")
    validate.add_argument("spaces", nargs="+", metavar="SPACE.yaml")

    report = commands.add_parser("report", help="write report.html and PNGs of a sweep's trials (also mid-sweep)")
    report.add_argument("experiment_dir")

    dashboard = commands.add_parser("dashboard", help="serve the sweep's Optuna study with optuna-dashboard")
    dashboard.add_argument("experiment_dir")
    dashboard.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    return parser


def overridden(spec, args):
    """Command-line flags over the YAML's settings."""
    flags = {
        "gpus_per_trial": args.gpus_per_trial,
        "cpus_per_trial": args.cpus_per_trial,
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
        "seed": args.seed,
        "checkpoint_interval_s": args.checkpoint_interval_s,
        "max_failures": args.max_failures,
    }
    for key, value in flags.items():
        may_be_zero = key in ("gpus_per_trial", "seed", "checkpoint_interval_s", "max_failures")
        if value is not None and (value < 0 or (value == 0 and not may_be_zero)):
            flag = "--checkpoint-interval" if key == "checkpoint_interval_s" else f"--{key.replace('_', '-')}"
            raise UserError(f"{flag} must be {'>= 0' if may_be_zero else '> 0'}, got {value:g}")
    from sweep.space import check_resources

    spec = dataclasses.replace(spec, **{k: v for k, v in flags.items() if v is not None})
    check_resources(spec)
    return spec


def cmd_run(args, argv, spec) -> int:
    from sweep.files import claim, unclaim_if_empty

    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    name = args.name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    experiment_dir = Path(args.storage_path).resolve() / name
    with claim(experiment_dir, new=True):  # before Ray starts: a directory in use is one line at once
        ray_start = RayStart(args.address, log_to_driver=args.verbose, dashboard_host=args.dashboard_host)
        try:
            from sweep.runner import run_sweep  # Ray Tune: ~1 s, while Ray starts

            with resume_hint(experiment_dir):
                result = run_sweep(
                    spec, experiment_dir, argv=argv, ray_start=ray_start, verbose=args.verbose, final=args.final
                )
            summarize(spec, result, args.final)  # before Ray stops: no one waits for that
        except BaseException:
            unclaim_if_empty(experiment_dir)
            raise
        finally:
            ray_start.shutdown()  # while the report is drawn
        return conclude(spec, result)


def cmd_resume(args) -> int:
    from sweep.files import claim
    from sweep.runner import resume_sweep

    experiment_dir = Path(args.experiment_dir).resolve()
    spec, address = resumed_spec(experiment_dir)
    address = args.address or address  # the cluster the sweep ran on, unless told another
    with claim(experiment_dir, new=False), resume_hint(experiment_dir):
        spec, result = resume_sweep(
            spec, experiment_dir, grow_to=args.num_samples, address=address, verbose=args.verbose
        )
    if result is None:
        print(
            f"sweep '{spec.name}' in {experiment_dir} is finished ({spec.num_samples} trials): nothing to resume; "
            f"`python -m sweep resume {experiment_dir} --num-samples N` grows it to N trials"
        )
        return 0
    summarize(spec, result)
    return conclude(spec, result)


def resumed_spec(experiment_dir: Path):
    """(the spec a sweep ran with, its --address): its command line again over its search-space file,
    which must not have changed since (sweep.yaml holds what it resolved to then)."""
    from sweep.files import SPEC_FILE
    from sweep.runner import resolved_spec
    from sweep.space import load_spec

    saved_path = experiment_dir / SPEC_FILE
    if not saved_path.exists() or not (experiment_dir / "tuner.pkl").exists():
        raise UserError(f"{experiment_dir}: not a sweep's experiment directory (no {SPEC_FILE} or Tune's tuner.pkl)")
    saved = load_yaml_mapping(saved_path)
    argv = saved["command"][3:]  # run SPACE [flags]
    args = build_parser().parse_args(argv)
    space = Path(saved["cwd"]) / args.space  # an absolute space path stays as it is
    spec = load_spec(str(space), cwd=saved["cwd"])
    spec = dataclasses.replace(overridden(spec, args), num_samples=saved["num_samples"])
    now = resolved_spec(spec, argv)
    for key, value in saved.items():
        if key not in ("source", "cwd", "command") and now.get(key) != value:
            raise UserError(
                f"{space}: changed since the sweep in {experiment_dir} started (its '{key}' differs from "
                f"{saved_path}); put the file back as it was, or start a new sweep with `python -m sweep run`"
            )
    return spec, args.address


@contextlib.contextmanager
def resume_hint(experiment_dir: Path):
    """An error in the driver, once the sweep has started, names the command that continues it."""
    try:
        yield
    except UserError:
        raise
    except Exception:
        if (experiment_dir / "tuner.pkl").exists():
            traceback.print_exc()
            raise UserError(
                f"the sweep's driver failed (traceback above); continue the sweep with "
                f"`python -m sweep resume {experiment_dir}`"
            ) from None
        raise


def summarize(spec, result, final: bool = False) -> None:
    """The summary as soon as the last trial has ended, then the final run (on the sweep's Ray)."""
    from sweep.runner import run_final

    print_summary(spec, result)
    if final and not result.interrupted and result.best is not None:
        print_final(run_final(result.experiment_dir, runner=result.final_runner))


def conclude(spec, result) -> int:
    """Once Ray is stopping or stopped: the report (drawn meanwhile), and the exit code."""
    if result.report is not None:
        print_report(*result.report.result(), result.experiment_dir)
    print_wandb_runs(spec, result.experiment_dir)
    if result.interrupted:
        print(
            "sweep: interrupted; the trials' results so far are in results.csv and best_config.yaml; continue "
            f"the sweep with `python -m sweep resume {result.experiment_dir}`",
            file=sys.stderr,
        )
        return 130
    return 0 if result.best is not None else 1


def print_wandb_runs(spec, experiment_dir: Path) -> None:
    """Where a program's offline W&B runs are, and how to upload them."""
    if spec.program and list(experiment_dir.glob("*/wandb/offline-run-*")):
        print(f"W&B runs:    offline; upload with `wandb sync {experiment_dir}/*/wandb/offline-run-*`")


def print_summary(spec, result) -> None:
    rows, best = result.rows, result.best
    print(
        f"\n{len(rows)} trials: {sum(r['status'] == 'completed' for r in rows)} completed, "
        f"{result.stopped_early} stopped early by ASHA, {len(result.errors)} failed, "
        f"{sum(r['status'] == 'diverged' for r in rows)} diverged, "
        f"{sum(r['status'] == 'interrupted' for r in rows)} interrupted"
        + (f"; {sum(r['retries'] for r in rows)} retries of lost trials" if any(r["retries"] for r in rows) else "")
    )
    for row in result.errors:
        print(f"  FAILED trial {row['trial_id']}: {row['error']}")
    if best is None:
        print(f"no trial reported {spec.metric}: nothing to choose from (see the errors above)", file=sys.stderr)
        return
    if spec.target is not None and spec.reached_target(best[spec.metric]):
        print(
            f"target {spec.target_text} reached by trial {best['trial_id']}: the searcher started no trial "
            f"after that ({len(rows)} of {spec.num_samples} trials ran)"
        )
    params = ", ".join(f"{k}={best[k]:.3g}" if isinstance(best[k], float) else f"{k}={best[k]}" for k in spec.params)
    print(f"best trial {best['trial_id']}: {params}")
    ran = f"{best['epochs']} of {spec.max_epochs} epochs" if spec.max_epochs else f"{best['epochs']} {spec.unit}s"
    # An interrupted trial may end better, or worse than another, once the sweep is resumed.
    note = "; INTERRUPTED, not finished: resuming the sweep finishes it" if best["status"] == "interrupted" else ""
    print(f"  {spec.metric}={spec.metric_text(best[spec.metric])} at {spec.unit} {best['best_epoch']}, {ran} run{note}")
    print(f"results:     {result.experiment_dir / 'results.csv'}")
    print(f"best config: {result.experiment_dir / 'best_config.yaml'}")
    print(f"final run:   python -m sweep final {result.experiment_dir}")


def cmd_validate(args) -> int:
    """Each file is read as `run` reads it; one line for a good file, one line per file for its problem."""
    from sweep.space import load_spec

    bad = 0
    for path in args.spaces:
        try:
            spec = load_spec(path)
        except UserError as exc:
            print(f"sweep: error: {exc}", file=sys.stderr)
            bad += 1
            continue
        for warning in spec.warnings:  # each names its file
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{path}: ok: {spec.method} search over {', '.join(spec.params)}, {spec.num_samples} trials")
    return 1 if bad else 0


def print_report(report, pngs, experiment_dir) -> None:
    print(f"report:      {report} ({len(pngs)} PNGs beside it)")
    print(f"TensorBoard: tensorboard --logdir {experiment_dir}")


def cmd_dashboard(args) -> int:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_dashboard import run_server

    from sweep.files import OPTUNA_JOURNAL

    journal = Path(args.experiment_dir) / OPTUNA_JOURNAL
    if not journal.exists():
        raise UserError(f"{journal}: no such file; is {args.experiment_dir} a sweep's experiment directory?")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            raise UserError(f"port {args.port} on 127.0.0.1 is in use: pass another with --port") from None
    print(f"optuna-dashboard: http://127.0.0.1:{args.port} (the study in {journal}; Ctrl-C stops it)", flush=True)
    # 127.0.0.1 only: optuna-dashboard has no login, and its pages can edit the study.
    run_server(JournalStorage(JournalFileBackend(str(journal))), host="127.0.0.1", port=args.port)
    return 0


def print_final(metrics: dict) -> None:
    if "metric" in metrics:  # a program's
        print(f"final run output: {metrics['output']}")
        print(f"final run: {metrics['metric']}={metrics['value']:.4g} (the last of {metrics['logged']} logged)")
        return
    print(f"final run checkpoint: {metrics['checkpoint']}")
    print(f"final run: val_acc={metrics['val_acc']:.4f} test_acc={metrics['test_acc']:.4f}")


def cmd_best(args) -> int:
    import pandas as pd

    from sweep.files import BEST_CONFIG, SPEC_FILE, read_results

    experiment_dir = Path(args.experiment_dir)
    rows = read_results(experiment_dir, load_yaml_mapping(experiment_dir / SPEC_FILE))
    if not rows:
        raise UserError(f"{experiment_dir}: no trial of this sweep has ended yet (results.csv has no row)")
    table = pd.DataFrame(rows).drop(columns=["error", "start_time"])
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_rows", None):
        print(table.to_string(index=False))
    best_path = experiment_dir / BEST_CONFIG
    if best_path.exists():
        print(f"\n{best_path}:\n{best_path.read_text()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from sweep.space import load_spec  # no torch: the flags' schema is text_recognizer.config's

            spec = overridden(load_spec(args.space), args)  # every problem of the file, before Ray starts
            if args.address and args.dashboard_host != "127.0.0.1":
                raise UserError("--dashboard-host is for a local Ray; a cluster's is set by `ray start --head`")
            return cmd_run(args, argv, spec)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "best":
            return cmd_best(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "report":
            from sweep.report import write_report

            print_report(*write_report(args.experiment_dir), args.experiment_dir)
            return 0
        if args.command == "dashboard":
            return cmd_dashboard(args)
        from sweep.runner import run_final

        print_final(run_final(args.experiment_dir, args.max_epochs))
        return 0
    except UserError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sweep: interrupted; finished trials are in the experiment directory's results.csv", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sweep best DIR | head -3`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to write at exit
        return 141  # 128 + SIGPIPE, as other tools that lose their reader
