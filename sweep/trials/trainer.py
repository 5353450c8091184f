"""Trials of our trainer, in-process in Ray's workers: the same `train()` as every run, reporting each epoch's
val_acc and val_loss, continuing from the checkpoint in its trial's directory. This module imports neither
torch nor Lightning: the driver names the trainable to Tune without them, and each worker imports them
(sweep.trials.trainer_worker) when it runs its first trial."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sweep.record.storage import TrialFiles
from sweep.spec.spec import SweepSpec
from text_recognizer.util import UserError


def use_ray_gpus() -> None:
    """A trial or final run sees exactly the GPUs Ray gave it, none where it asked for none: Ray 2.60 leaves
    CUDA_VISIBLE_DEVICES as the node's for a task or actor that asks for no GPU (ray#54868). Before torch
    first touches CUDA in this process; a worker that Tune reuses keeps its resources, so its GPUs too."""
    import ray

    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in ray.get_gpu_ids())


def run_trial(config: dict, *, spec: SweepSpec, splits, experiment: str) -> None:
    """Tune's function trainable; `spec` and `splits` reach each node once, through Ray's object store.
    `config`: the trial's number and the values it runs with; `experiment`: where its directory is."""
    use_ray_gpus()
    from sweep.trials.trainer_worker import train_trial

    files = trial_files(experiment, config["trial"])
    if files is None:
        return
    try:
        train_trial(config["params"], spec=spec, splits=splits, files=files)
    finally:
        files.close()


def trial_files(experiment: str, number: int) -> TrialFiles | None:
    """The trial's directory; None, its trial ended with one line, where this node cannot write there."""
    import ray
    from ray import tune

    from sweep.trials import reports

    try:
        return TrialFiles(experiment, number)
    except OSError as exc:
        node = ray.get_runtime_context().get_node_id()
        tune.report(reports.end(failed=f"node {node[:8]} cannot write the trial's directory in {experiment} "
                                f"({exc.strerror or exc}): pass --storage-path on a filesystem that every node "
                                "mounts at the same place, or an s3:// or gs:// URI"))  # fmt: skip
        return None


class TrainerTrials:
    """The adapter of our trainer: what its trials report, how long they run, their trainable, the final run."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    @property
    def horizon(self) -> int:
        return self.spec.max_epochs

    def load(self):
        """The dataset, decoded in the driver (as numpy: no torch), shared with trials by Ray's object store."""
        from text_recognizer import datasets

        return datasets.load_splits(self.spec.base_config["data_class"], self.spec.base_config["data_dir"])

    def trainable(self, experiment: str, verbose: bool, data):
        from ray import tune

        # One worker process serves trial after trial: each node holds one copy of the data, read in place.
        return tune.with_parameters(run_trial, spec=self.spec, splits=data, experiment=experiment)

    def final_runner(self):
        """An actor that has imported torch and Lightning by the time the sweep ends, so that `run --final`
        starts at once (a new process pays ~5 s of imports on 2 cores); on a CPU sweep it holds nothing
        while trials run. A GPU sweep's final run asks for a GPU once the trials are done."""
        import ray

        if self.spec.gpus_per_trial:
            return None
        return ray.remote(num_cpus=0, num_gpus=0)(FinalRunner).remote()

    def final_run(self, experiment_dir: Path, values: dict, runner=None, max_epochs: int | None = None) -> dict:
        """Train the best values from scratch and test them; files in EXPERIMENT_DIR/final. On the sweep's Ray
        (`runner`, or a new actor with a GPU where trials had one), or here without Ray (`sweep final`)."""
        from text_recognizer.config import resolve_config

        config = resolve_config({**self.spec.base_config, **values}, f"{experiment_dir}: the best trial")
        if max_epochs is not None:
            config["max_epochs"] = max_epochs
        output = str(experiment_dir / "final")
        print(f"final run of the best trial's config, {config['max_epochs']} epochs", file=sys.stderr, flush=True)
        if runner is None and self.spec.gpus_per_trial and _ray_is_up():
            import ray

            runner = ray.remote(num_cpus=1, num_gpus=1)(FinalRunner).remote()
        if runner is not None:
            import ray

            return ray.get(runner.train.remote(config, output))
        from text_recognizer.training import train

        return train(config, output_dir=output, quiet=True)

    def final_text(self, metrics: dict) -> list[str]:
        where = f" (on Ray, GPUs: {metrics['gpus'] or 'none'})" if "gpus" in metrics else ""
        return [f"final run checkpoint: {metrics['checkpoint']}",
                f"final run: val_acc={metrics['val_acc']:.4f} test_acc={metrics['test_acc']:.4f}{where}"]  # fmt: skip

    def check_final(self, max_epochs: int | None) -> None:
        if max_epochs is not None and max_epochs < 1:
            raise UserError(f"--max-epochs must be at least 1, got {max_epochs}")


def _ray_is_up() -> bool:
    import ray

    return ray.is_initialized()


class FinalRunner:
    """`run --final`'s trainer, on the sweep's Ray."""

    def __init__(self):
        use_ray_gpus()
        import text_recognizer.training  # noqa: F401

    def train(self, config: dict, output_dir: str) -> dict:
        """Its metrics, and the GPUs it saw (Ray's for it)."""
        from text_recognizer.training import train

        return {**train(config, output_dir=output_dir, quiet=True), "gpus": os.environ["CUDA_VISIBLE_DEVICES"]}
