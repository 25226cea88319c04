#!/usr/bin/env bash
# Run the test suite, the cross-check and the benchmarks on a GPU machine, writing every result
# under $OUT (default: benchmarks/results/gpu-<date>). Run from anywhere, as is:
#     OUT=/some/folder bash benchmarks/run_gpu.sh
# Needs a JAX with CUDA (pip install "jax[cuda12]") in the active Python; PyTorch is optional.
# Each step's exit code is recorded in $OUT/status.txt; the script fails if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
status=0

step() {  # step NAME COMMAND...: run, keep stdout+stderr in $OUT/NAME.log, record the exit code
    local name=$1; shift
    echo "== $name: $*"
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name $rc" >> "$OUT/status.txt"
    tail -n 25 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || status=1
}

: > "$OUT/status.txt"
step environment "$PYTHON" -c "import jax, jaxlib; print(jax.__version__, jaxlib.__version__); print(jax.devices()); [print(d.device_kind) for d in jax.devices()]"
step nvidia-smi nvidia-smi
step tests "$PYTHON" -m pytest -q -p no:cacheprovider -x
step crosscheck-gpu-highest "$PYTHON" -m convgrad.cli crosscheck --platform gpu --precision highest --json "$OUT/crosscheck-gpu-highest.json"
step crosscheck-gpu-default "$PYTHON" -m convgrad.cli crosscheck --platform gpu --precision default --json "$OUT/crosscheck-gpu-default.json"
step crosscheck-cpu "$PYTHON" -m convgrad.cli crosscheck --platform cpu --json "$OUT/crosscheck-cpu.json"
step lowering "$PYTHON" -m convgrad.cli crosscheck --lower-only cpu,cuda,rocm,tpu --json "$OUT/lowering.json"
step sharding "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_sharding.py
mkdir -p "$OUT/bench-gpu"
step bench-gpu "$PYTHON" -m convgrad.cli bench --out "$OUT/bench-gpu"
mkdir -p "$OUT/bench-cpu"
step bench-cpu env JAX_PLATFORMS=cpu "$PYTHON" -m convgrad.cli bench --dtypes float32 --out "$OUT/bench-cpu"
echo "results in $OUT; step exit codes:"
cat "$OUT/status.txt"
exit "$status"
