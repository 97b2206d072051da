#!/usr/bin/env bash
# Run the whole test suite (core tests, and GUI tests under a virtual X server).
set -euo pipefail
cd "$(dirname "$0")/.."
export NAPARI_CONFIG="${NAPARI_CONFIG:-$(mktemp -d)/napari-settings.yaml}"
.venv/bin/python -m pytest "$@"
