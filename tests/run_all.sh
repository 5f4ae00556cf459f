#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (the README's test command):
#   1. a venv with the test + tools extras (LiteRT backend), the full pytest suite;
#   2. the Python 3.8 compatibility check of the runtime package (vermin);
#   3. a second venv with tflite-runtime and numpy<2 (Python 3.8 where installed), the runtime tests again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Creates a venv with a private TMPDIR, then removes it: Python 3.8's ensurepip runs pip 23.0 from its
# wheel, which leaves a copy of its CA bundle (275 KB, /tmp/tmpXXXXXXXX) behind (pypa/pip#10753).
make_venv() {
    local tmp
    tmp=$(mktemp -d)
    TMPDIR="$tmp" "$1" -m venv "$2"
    rm -rf "$tmp"
}

echo "== [1/3] main venv (.venv-test): pip install -e '.[test,tools]', full suite on LiteRT"
make_venv "$PY" .venv-test
.venv-test/bin/python -m pip install -q --upgrade pip
.venv-test/bin/python -m pip install -q -e '.[test,tools]'
EDGEEXIT_INTERPRETER=litert .venv-test/bin/python -m pytest -q -p no:cacheprovider "$@"

echo "== [2/3] runtime package is Python 3.8 compatible (vermin)"
.venv-test/bin/vermin -t=3.8- --no-tips --violations --eval-annotations --backport dataclasses edgeexit

echo "== [3/3] tflite-runtime backend venv (.venv-tflite, numpy<2)"
PY_OLD="$PY"   # Python 3.8 (JetPack 5's) when this machine has one, else the main interpreter
for cand in python3.8 "$(pyenv root 2>/dev/null)"/versions/3.8*/bin/python3.8 python3.9; do
    if "$cand" --version >/dev/null 2>&1; then PY_OLD="$cand"; break; fi
done
make_venv "$PY_OLD" .venv-tflite
.venv-tflite/bin/python -m pip install -q --upgrade pip
.venv-tflite/bin/python -m pip install -q -e . 'numpy<2' 'tflite-runtime>=2.13' 'pytest>=7' 'hypothesis>=6'
.venv-tflite/bin/python -c 'import sys; print("python", sys.version.split()[0])'
EDGEEXIT_INTERPRETER=tflite .venv-tflite/bin/python -m pytest -q -p no:cacheprovider -m backend tests/bundle tests/runtime tests/policies tests/cli tests/test_segment_probe.py
echo "== all test stages passed"
