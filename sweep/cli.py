"""sweep {run,resume,best,final,validate,report,dashboard}: parse, call, print; errors: one line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
import traceback
from datetime import datetime
from pathlib import Path

from text_recognizer.util import OneLineParser, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sweep", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="run a sweep from a sweep file (W&B's format)")
    run.add_argument("space", help="the sweep file, e.g. search_spaces/quickstart.yaml")
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; 0.25 packs 4 trials on a GPU, 0 = CPU")
    run.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    run.add_argument("--num-samples", type=int, help="number of trials")
    run.add_argument("--max-concurrent", type=int,
                     help="at most this many trials at a time (default: as many as the resources allow)")  # fmt: skip
    run.add_argument("--seed", type=int, help="searcher seed: the same seed gives the same suggestions")
    run.add_argument("--checkpoint-interval", type=float, dest="checkpoint_interval_s", metavar="SECONDS",
                     help="a trial saves a checkpoint at most this often, to continue from (default 60; 0: every "
                     "epoch)")  # fmt: skip
    run.add_argument("--max-failures", type=int, help="retries of a trial whose worker or node is lost (default 2)")
    run.add_argument("--address", help="an existing Ray cluster, e.g. 10.0.0.1:6379 or auto (default: a local Ray)")
    run.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="where the local Ray's dashboard listens (default 127.0.0.1; 0.0.0.0: every interface)",
    )
    run.add_argument("--storage-path", default="runs", help="where experiment directories go (default: runs)")
    run.add_argument("--name", help="experiment directory name (default: the file's name and the time)")
    run.add_argument("--warm-start", action="append", default=[], metavar="DIR",
                     help="start the search from an earlier sweep's ended trials (repeatable)")  # fmt: skip
    run.add_argument("--final", action="store_true", help="after the sweep, train the best config and test it")
    run.add_argument(
        "--resume", action="store_true", help="continue the sweep of that --name if it exists (KubeRay's retries)"
    )
    run.add_argument("--verbose", action="store_true", help="every trial's own output in the terminal too")

    resume = commands.add_parser(
        "resume", help="continue a sweep whose driver ended (a kill, Ctrl-C, a reboot), grow it, or edit it"
    )
    resume.add_argument("experiment_dir")
    resume.add_argument("--num-samples", type=int, help="grow the sweep to this many trials in all")
    resume.add_argument(
        "--spec",
        metavar="EDITED.yaml",
        help="go on with an edited sweep file: other ranges or values, more trials, early stopping",
    )
    resume.add_argument("--address", help="the Ray cluster to continue on (default: the one it ran on, or a local Ray)")
    resume.add_argument("--verbose", action="store_true", help="every trial's own output in the terminal too")

    best = commands.add_parser("best", help="print the best config and the trials of a sweep")
    best.add_argument("experiment_dir")

    final = commands.add_parser("final", help="train a sweep's best config from scratch and test it")
    final.add_argument("experiment_dir")
    final.add_argument("--max-epochs", "--max_epochs", type=int, dest="max_epochs",
                       help="override the sweep's max_epochs")  # fmt: skip

    validate = commands.add_parser("validate", help="check sweep files without Ray (exit 1 if one is bad)")
    validate.add_argument("spaces", nargs="+", metavar="SPACE.yaml")

    report = commands.add_parser("report", help="write report.html and PNGs of a sweep (also mid-sweep)")
    report.add_argument("experiment_dir")

    dashboard = commands.add_parser("dashboard", help="serve the sweep's Optuna study with optuna-dashboard")
    dashboard.add_argument("experiment_dir")
    dashboard.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    return parser


def command_line_flags(args) -> dict:
    flags = {
        "gpus_per_trial": args.gpus_per_trial,
        "cpus_per_trial": args.cpus_per_trial,
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
        "seed": args.seed,
        "checkpoint_interval_s": args.checkpoint_interval_s,
        "max_failures": args.max_failures,
    }
    return {key: value for key, value in flags.items() if value is not None}


def cmd_run(args) -> int:
    from sweep.record.storage import Experiment, child
    from sweep.spec.load import load_spec
    from sweep.spec.spec import check_flags

    flags = command_line_flags(args)
    spec = check_flags(load_spec(args.space), flags)  # every problem of the file, before Ray starts
    if args.address and args.dashboard_host != "127.0.0.1":
        raise UserError("--dashboard-host is for a local Ray; a cluster's is set by `ray start --head`")
    from sweep.engine.fit import warm_trials

    warm_start = {earlier: warm_trials(earlier, spec) for earlier in args.warm_start}  # each one line, before Ray
    for earlier, trials in warm_start.items():
        if not trials:
            spec.warnings.append(f"--warm-start {earlier}: none of its ended trials has values this sweep's space "
                                 "can give: it starts from nothing")  # fmt: skip
    if warm_start and spec.method != "bayes":
        spec.warnings.append(f"--warm-start: method {spec.method} does not learn from earlier trials (bayes does): "
                             "they are in the study, the report and the dashboard, and change no trial")  # fmt: skip
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    name = args.name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    experiment = Experiment(child(args.storage_path, name))
    if args.resume and experiment.exists():
        return resume_existing(args, spec, experiment)
    experiment = open_new(experiment)
    try:
        return start_sweep(args, spec, flags, warm_start, experiment)
    finally:
        experiment.close()  # a mirror of one in object storage: uploaded, and gone


def start_sweep(args, spec, flags, warm_start, experiment) -> int:
    from sweep.engine.cluster import RayStart, shipped_program
    from sweep.record.files import claim, unclaim_if_unstarted

    with claim(experiment.local, new=True):  # before Ray starts: a directory in use is one line at once
        ray_start = RayStart(args.address, log_to_driver=args.verbose, dashboard_host=args.dashboard_host,
                             runtime_env=shipped_program(spec, experiment.remote is not None))  # fmt: skip
        try:
            from sweep.engine.fit import run_sweep  # Ray Tune: ~1 s, while Ray starts

            with resume_hint(experiment):
                result = run_sweep(spec, experiment, ray_start=ray_start, flags=flags, warm_start=warm_start,
                                   verbose=args.verbose, final=args.final)  # fmt: skip
            summarize(result, final=args.final)  # before Ray stops: no one waits for that
        except BaseException:
            unclaim_if_unstarted(experiment.local)
            raise
        finally:
            ray_start.shutdown()  # while the report is drawn
        return conclude(result)


def resume_existing(args, spec, experiment) -> int:
    """`run --resume` of a sweep that exists: its resume, if the file is still the one it runs."""
    from sweep.engine.fit import same_sweep
    from sweep.record.state import read
    from sweep.record.storage import local_copy

    copy, local = local_copy(experiment.uri)
    recorded = read(local, live=False).spec
    copy.close(upload=False)
    if same_sweep(recorded) != same_sweep(spec.resolved()):
        raise UserError(f"{experiment} holds a sweep of another file or flags: `sweep resume {experiment} --spec "
                        f"{args.space}` goes on with this one")  # fmt: skip
    resume = argparse.Namespace(experiment_dir=experiment.uri, num_samples=None, spec=None, address=args.address,
                                verbose=args.verbose)  # fmt: skip
    return cmd_resume(resume)


def open_new(experiment):
    """A new experiment's place: nothing there yet, and, in object storage, writable (before Ray starts)."""
    if experiment.remote is not None:
        experiment.check_writable()
        if experiment.exists():
            raise UserError(f"{experiment} already exists: continue that sweep with `sweep resume {experiment}`, "
                            "or pass another --name")  # fmt: skip
        experiment.mirror()
    return experiment


def cmd_resume(args) -> int:
    from sweep.engine.fit import resume_sweep
    from sweep.record.files import claim
    from sweep.record.storage import local_copy

    experiment, local = local_copy(args.experiment_dir)
    try:
        with claim(local, new=False), resume_hint(experiment):
            result = resume_sweep(experiment, grow_to=args.num_samples, edited=args.spec, address=args.address,
                                  verbose=args.verbose)  # fmt: skip
        if result is None:
            print(
                f"the sweep in {experiment} is finished: nothing to resume; `sweep resume {experiment} "
                "--num-samples N` grows it to N trials, `--spec EDITED.yaml` goes on with an edited file"
            )
            return 0
        summarize(result)
        return conclude(result)
    finally:
        experiment.close()


@contextlib.contextmanager
def resume_hint(experiment):
    """An error in the driver, once the sweep has started, names the command that continues it (the record
    is uploaded first, where it is in object storage)."""
    try:
        yield
    except UserError:
        raise
    except Exception:
        from sweep.record.files import EVENTS

        if (experiment.local / EVENTS).exists():
            traceback.print_exc()
            experiment.push()
            raise UserError(
                f"the sweep's driver failed (traceback above); continue the sweep with `sweep resume {experiment}`"
            ) from None
        raise


def summarize(result, final: bool = False) -> None:
    """The summary as soon as the last trial has ended, then the final run (on the sweep's Ray)."""
    from sweep.views.summary import summary_lines

    experiment = result.experiment
    print("\n".join(summary_lines(result.state, experiment.uri)))
    best = result.state.best()
    if final and not result.interrupted and best is not None:
        kind = final_kind(experiment.local, result.state)
        print("\n".join(kind.final_text(kind.final_run(experiment.local, best.params, result.final_runner))))
        experiment.push()


def conclude(result) -> int:
    """Once Ray is stopping or stopped: the report (drawn meanwhile), and the exit code."""
    experiment = result.experiment
    if result.report is not None:
        print_report(*result.report.result(), experiment)
        experiment.push()
    if result.state.spec["kind"] == "program" and experiment.remote is None:
        if list(experiment.local.glob("trials/*/wandb/offline-run-*")):
            print(f"W&B runs:    offline; upload with `wandb sync {experiment}/trials/*/wandb/offline-run-*`")
    if result.interrupted:
        print(f"sweep: interrupted; what ran is in results.csv and the report; continue the sweep with "
              f"`sweep resume {experiment}`", file=sys.stderr)  # fmt: skip
        return 130
    return 1 if result.state.metric and result.state.best() is None else 0


def final_kind(experiment_dir: Path, state):
    from sweep.engine.fit import spec_from_record
    from sweep.trials import trials_of

    return trials_of(spec_from_record(experiment_dir, state))


def print_report(report, pngs, experiment) -> None:
    """Where the report is: in the experiment, which may be a URI (the report was drawn in its mirror)."""
    from sweep.record.storage import child

    print(f"report:      {child(experiment.uri, report.name) if experiment.remote else report} ({len(pngs)} "
          "PNGs beside it)")  # fmt: skip
    print(f"TensorBoard: tensorboard --logdir {child(experiment.uri, 'trials')}")


def cmd_validate(args) -> int:
    """Each file is read as `run` reads it; one line for a good file, one line per file for its problem."""
    from sweep.spec.load import load_spec

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
        searched = ", ".join(spec.params) or "no parameter (constants only)"
        print(f"{path}: ok: {spec.method} search over {searched}, {spec.num_samples} trials")
    return 1 if bad else 0


def cmd_best(args) -> int:
    from sweep.record.files import BEST_CONFIG
    from sweep.record.state import read
    from sweep.record.storage import child, local_copy
    from sweep.views.summary import best_table

    experiment, experiment_dir = local_copy(args.experiment_dir)
    state = read(experiment_dir, live=experiment.live())
    experiment.close()
    if not state.trials:
        raise UserError(f"{experiment}: no trial of this sweep has started yet")
    print(best_table(state))
    if state.metric is None:
        print("\nno best: a sweep without a metric chooses none")
        return 0
    best = state.best()
    if best is None:
        print(f"\nno best: no trial reported {state.metric}")
        return 1
    from sweep.views.exports import best_config_text

    print(f"\n{child(experiment.uri, BEST_CONFIG)}:\n{best_config_text(state, best, experiment.uri)}")
    return 0


def cmd_final(args) -> int:
    from sweep.record.state import read
    from sweep.record.storage import local_copy

    experiment, experiment_dir = local_copy(args.experiment_dir)
    try:
        state = read(experiment_dir, live=experiment.live())
        if state.metric is None:
            raise UserError(f"{experiment}: a sweep without a metric has no best trial to run again")
        best = state.best()
        if best is None:
            raise UserError(f"{experiment}: no trial reported {state.metric}: there is no best config to run")
        kind = final_kind(experiment_dir, state)
        kind.check_final(args.max_epochs)
        print("\n".join(kind.final_text(kind.final_run(experiment_dir, best.params, max_epochs=args.max_epochs))))
        experiment.push()  # final/, where the experiment is
    finally:
        experiment.close()
    return 0


def cmd_report(args) -> int:
    from sweep.record.state import read
    from sweep.record.storage import local_copy
    from sweep.views.report import write_report

    experiment, experiment_dir = local_copy(args.experiment_dir)
    try:
        print_report(*write_report(experiment_dir, read(experiment_dir, live=experiment.live())), experiment)
        experiment.push()
    finally:
        experiment.close()
    return 0


def cmd_dashboard(args) -> int:
    from optuna_dashboard import run_server

    from sweep.engine.study import journal_storage
    from sweep.record.files import OPTUNA_JOURNAL
    from sweep.record.state import read
    from sweep.record.storage import local_copy

    experiment, experiment_dir = local_copy(args.experiment_dir)
    state = read(experiment_dir, live=experiment.live())
    journal = experiment_dir / OPTUNA_JOURNAL
    if state.metric is None:
        raise UserError(f"{experiment}: a sweep without a metric has no objective for optuna-dashboard to "
                        "show: see `sweep report` or results.csv")  # fmt: skip
    if experiment.remote is not None:
        print(f"optuna-dashboard: the study as it was when downloaded from {experiment}", flush=True)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            raise UserError(f"port {args.port} on 127.0.0.1 is in use: pass another with --port") from None
    print(f"optuna-dashboard: http://127.0.0.1:{args.port} (the study in {journal}; Ctrl-C stops it)", flush=True)
    # 127.0.0.1 only: optuna-dashboard has no login, and its pages can edit the study.
    try:
        run_server(journal_storage(journal), host="127.0.0.1", port=args.port)
    finally:
        experiment.close(upload=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "best":
            return cmd_best(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "dashboard":
            return cmd_dashboard(args)
        return cmd_final(args)
    except UserError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sweep: interrupted; what ran is in the experiment directory's results.csv", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sweep best DIR | head -3`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to write at exit
        return 141  # 128 + SIGPIPE, as other tools that lose their reader


def console() -> None:
    """The `sweep` command (`python -m sweep` too). Every file is closed and Ray is shut down by the time main
    returns: skipping the interpreter's teardown of torch, Lightning and Ray modules saves about 2 s per
    command on 2 cores, and does nothing for the user."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
