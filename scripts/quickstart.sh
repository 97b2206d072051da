#!/usr/bin/env bash
# Set everything up, then segment the shipped sample field with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/napari-unet segment src/napari_unet/data/nuclei.tif -o demo_output
echo "Label image written to demo_output/. Open napari with: .venv/bin/napari"
