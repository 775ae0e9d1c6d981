#!/usr/bin/env bash
# PostgreSQL's server programs (initdb, pg_ctl), which the tests start themselves for the
# DuckLake catalog: installed from the OS packages where they are missing. Safe to run again.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "postgres.sh: install PostgreSQL (initdb, pg_ctl) from your OS packages" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# Whatever cluster the package sets up goes unused: the tests start their own.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
