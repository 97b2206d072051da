#!/usr/bin/env bash
# Set up napari-unet for development in ./.venv: system libraries for Qt under a
# virtual display (Debian/Ubuntu, when run as root), PyTorch, and the package with
# its napari and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libfontconfig1 libfreetype6
fonts-dejavu-core libdbus-1-3 libglib2.0-0 libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb1
libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
libxcb-render0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1 libxcb-glx0
libxcb-util1"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # shellcheck disable=SC2086
  if ! dpkg -s $APT_PACKAGES >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
  fi
elif ! command -v Xvfb >/dev/null; then
  echo "note: Xvfb not found; the GUI tests need it (apt-get install xvfb and the libraries in $0)" >&2
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# PyTorch first, pinned by a constraints file so no later step swaps it for another build.
export PIP_CONSTRAINT="$PWD/.ci/constraints.txt"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
# the distribution was called napari-unet before (a name taken on PyPI): remove that
# editable install, or napari would list the plugin twice
if .venv/bin/python -m pip show -q napari-unet >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -q -y napari-unet
fi
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import napari_unet, torch; print(f'napari-unet {napari_unet.__version__} ready (torch {torch.__version__})')"
