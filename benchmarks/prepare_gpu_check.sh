#!/usr/bin/env bash
# Run here (with a network to PyPI) before a device call: puts what gpu_check.sh needs into ignored folders
# of the working tree, to be named in the device call's `carry`: data/downloaded (Fashion-MNIST, 31 MB)
# and .whl (Ray, Optuna and what they need that the device image lacks; Python 3.12 wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data/downloaded/FashionMNIST/raw .whl
cp /usr/share/datasets/fashion-mnist/*.gz data/downloaded/FashionMNIST/raw/
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "ray==2.60.0" "optuna>=5.1,<5.2" alembic sqlalchemy colorlog mako greenlet
du -sh data/downloaded .whl
