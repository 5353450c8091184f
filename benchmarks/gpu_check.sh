#!/usr/bin/env bash
# On a machine with a CUDA GPU: epoch_speed on the GPU, then sweep_efficiency with one trial per GPU and
# with four trials sharing it (--gpus-per-trial 0.25). About 5 minutes. Prepare with prepare_gpu_check.sh
# and carry data/downloaded and .whl; the output goes to stdout and, on the device tool, to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export TEXT_RECOGNIZER_DATA_DIR="$PWD/data/downloaded" PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  timeout 120 python3 benchmarks/epoch_speed.py --epochs 4 --repeats 4
  timeout 150 python3 benchmarks/sweep_efficiency.py --gpus-per-trial 1
  timeout 150 python3 benchmarks/sweep_efficiency.py --gpus-per-trial 0.25
} 2>&1 | grep -v -e "Warning" -e "_pytree" | tee "$out/gpu_check.txt"
