#!/usr/bin/env bash
# Create .venv and install shipskip with everything it needs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.shipskip-installed
LLAMA_VERSION=0.3.36
# llama-cpp-python compiles llama.cpp from source. A build tuned to the build machine's CPU
# (GGML_NATIVE, with AVX-512/AMX kernels on recent Xeons) segfaults as soon as the server
# decodes on a worker thread, so it is built for portable AVX2 instead, once, into a wheel
# kept beside the project: pip's own cache would hand back a native build made earlier.
wheels=.cache/wheels
if ! ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  .venv/bin/python -m pip install --quiet --upgrade pip
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF" .venv/bin/python -m pip wheel --quiet --no-deps \
    --no-cache-dir -w "$wheels" "llama-cpp-python==$LLAMA_VERSION"
  rm -f "$stamp"
fi
# Reinstall only when the project's dependencies changed.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi
