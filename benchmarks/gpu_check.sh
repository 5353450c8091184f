#!/usr/bin/env bash
# The one check that a lent GPU machine runs (under 10 minutes on an H100): the seed's command with --gpus=1;
# a sweep with one GPU per trial and one with four trials sharing a GPU, each trial's GPU ids and peak GPU
# memory read from the sweep's record and asserted by benchmarks/gpu_trials.py (one GPU per trial: trials
# at the same time on distinct GPUs; 0.25: trials at the same time on a shared one; every peak under its
# bound); an epoch on the GPU against a raw PyTorch loop. Everything printed goes to $OUT/gpu_check.txt
# (benchmarks/results/ without the device tool). Exit 0 when every check holds; else exit 1 with one line
# on stderr naming what failed. Without a GPU it says so in one line and exits 1.
# Prepare with prepare_gpu_check.sh, and carry data/downloaded and .whl.
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
missing=$(python3 -c "
import importlib.util
modules = ['ray', 'optuna', 'yaml', 'torch', 'torchvision', 'pytorch_lightning', 'torchmetrics', 'tensorboardX',
           'plotly', 'matplotlib', 'tqdm', 'pandas']
print(' '.join(m for m in modules if importlib.util.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "gpu_check: this machine's Python lacks $missing: add them to prepare_gpu_check.sh" >&2
  exit 1
fi
export TEXT_RECOGNIZER_DATA_DIR="$PWD/data/downloaded" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=token
runs=$(mktemp -d)
failures="$runs/failures"
touch "$failures"
fail() {  # a check that did not hold: in the transcript now, and in the one line at the end
  echo "  FAILED: $1"
  echo "$1" >> "$failures"
}
{
  date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  echo "== the seed's command, on the GPU (Fashion-MNIST: full MNIST cannot be downloaded offline)"
  timeout 120 python3 training/run_experiment.py --model_class=MLP --data_class=FashionMNIST --max_epochs=5 \
    --gpus=1 --fc1=128 --fc2=64 --output_dir "$runs/seed" | tail -2
  code=${PIPESTATUS[0]}
  [ "$code" -eq 0 ] || fail "the seed's command with --gpus=1 exited $code"
  for share in 1 0.25; do
    echo "== a sweep with --gpus-per-trial $share"
    timeout 180 python3 -m sweep run search_spaces/fashion_mnist.yaml --gpus-per-trial "$share" --num-samples 8 \
      --storage-path "$runs" --name "share-$share" | tail -12
    code=${PIPESTATUS[0]}
    if [ "$code" -ne 0 ]; then
      fail "the sweep with --gpus-per-trial $share exited $code"
    elif ! python3 benchmarks/gpu_trials.py "$runs/share-$share" --gpus-per-trial "$share" 2> "$runs/reason"; then
      fail "$(tail -1 "$runs/reason")"
    fi
  done
  echo "== an epoch on the GPU against a raw PyTorch loop"
  timeout 120 python3 benchmarks/epoch_speed.py --epochs 4 --repeats 4
  code=$?
  [ "$code" -eq 0 ] || fail "benchmarks/epoch_speed.py exited $code"
} 2>&1 | grep -v -e "Warning" -e "_pytree" | tee "$out/gpu_check.txt"
if [ -s "$failures" ]; then
  echo "gpu_check: failed: $(paste -sd ';' "$failures" | sed 's/;/; /g')" | tee -a "$out/gpu_check.txt" >&2
  exit 1
fi
echo "gpu_check: every check held" | tee -a "$out/gpu_check.txt"
