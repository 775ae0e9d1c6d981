#!/usr/bin/env bash
# The main job: set up, review every sample tool with the embedded model, publish the site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Every sample card, whatever its format (YAML, JSON, Markdown with front matter).
.venv/bin/shipskip review data/tools/*.yaml data/tools/*.json data/tools/*.md "$@"
.venv/bin/shipskip compare claw-code smollm3
# The whole static site: index, categories, tools, comparisons, reviewers, digests, feed.
.venv/bin/shipskip site
out="${SHIPSKIP_OUT_DIR:-out}"
echo "Open $out/index.html in a browser (or serve it: .venv/bin/shipskip web, then http://127.0.0.1:8000/)."
