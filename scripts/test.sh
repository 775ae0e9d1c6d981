#!/usr/bin/env bash
# Set up, lint, and run the whole test suite (the real model included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
bash scripts/postgres.sh
.venv/bin/ruff check src flows tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
