#!/usr/bin/env bash
# A program without W&B, in another language: it reads --name=value arguments and prints name=value lines
# on stdout, one per epoch, which the sweep reads as Katib's StdOut collector does.
set -eu
for argument in "$@"; do
  case "$argument" in
    --lr=*) lr="${argument#--lr=}" ;;
    --epochs=*) epochs="${argument#--epochs=}" ;;
  esac
done
echo "starting with lr=$lr for $epochs epochs"   # a value of no metric: read, not reported
for epoch in $(seq 1 "$epochs"); do
  sleep 0.3  # an epoch takes a moment: trials side by side land on different nodes
  awk -v e="$epoch" -v lr="$lr" 'BEGIN { printf "epoch=%d val_loss=%.4f\n", e, 1 / (e * lr * 100) }'
done
