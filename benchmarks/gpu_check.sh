#!/usr/bin/env bash
# The one check that a lent GPU machine runs (under 10 minutes on an H200): the seed's command with
# --gpus=1, a sweep with one GPU per trial and one with four trials sharing a GPU (each trial's GPU ids
# and peak GPU memory from its results), and an epoch on the GPU against a raw PyTorch loop. Without a
# GPU it says so in one line and exits 1. Prepare with prepare_gpu_check.sh, carry data/downloaded and
# .whl; everything printed goes to $OUT/gpu_check.txt (benchmarks/results/ without the device tool).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > /dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU on this machine (nvidia-smi finds none): nothing to check"
  exit 1
fi
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export TEXT_RECOGNIZER_DATA_DIR="$PWD/data/downloaded" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=token
runs=$(mktemp -d)
per_trial() {  # each trial's GPU ids and peak GPU memory, from Tune's record of its last result
  python3 - "$1" <<'PY'
import json, sys
from pathlib import Path
for result in sorted(Path(sys.argv[1]).glob("run_trial_*/result.json")):
    last = json.loads(result.read_text().splitlines()[-1])
    print(f"  trial {last['trial_id']}: GPUs {last.get('gpu_ids')!r}, peak {last.get('gpu_peak_mb', 0):.0f} MiB, "
          f"val_acc {last['val_acc']:.4f}, {last['epoch']} epochs, last epoch {last['epoch_time_s']:.2f} s")
PY
}
{
  date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  echo "== the seed's command, on the GPU (Fashion-MNIST: full MNIST cannot be downloaded offline)"
  timeout 120 python3 training/run_experiment.py --model_class=MLP --data_class=FashionMNIST --max_epochs=5 \
    --gpus=1 --fc1=128 --fc2=64 --output_dir "$runs/seed" | tail -2
  for share in 1 0.25; do
    echo "== a sweep with --gpus-per-trial $share"
    timeout 180 python3 -m sweep run search_spaces/fashion_mnist.yaml --gpus-per-trial "$share" --num-samples 8 \
      --storage-path "$runs" --name "share-$share" | tail -12
    per_trial "$runs/share-$share"
  done
  echo "== an epoch on the GPU against a raw PyTorch loop"
  timeout 120 python3 benchmarks/epoch_speed.py --epochs 4 --repeats 4
} 2>&1 | grep -v -e "Warning" -e "_pytree" | tee "$out/gpu_check.txt"
