#!/usr/bin/env bash
# The main job: set up, review the sample tools with the embedded model, render a comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/shipskip review data/tools/*.yaml "$@"
.venv/bin/shipskip compare claw-code smollm3
