#!/usr/bin/env bash
# The GPU checks of issue 6, as one command for a lent GPU machine, run from anywhere, as is:
#     OUT=/some/folder [DEADLINE_S=480] bash benchmarks/run_gpu.sh [STEP ...]
# Needs a JAX with CUDA (pip install "jax[cuda12]") in the active Python ($PYTHON); PyTorch is
# optional. Without STEP names it runs every step, most wanted first (a lease may end early):
#     environment nvidia-smi crosscheck-gpu-highest crosscheck-gpu-default lowering sharding
#     bench-gpu tests crosscheck-cpu bench-cpu
#
# Results go to $RESULTS (default benchmarks/results/gpu-<date>): one log per step, the JSON and
# Markdown each step writes, and status.txt with each step's exit code ("skipped" where the
# deadline came first). The device tool brings back at most 8 files from $OUT, so when OUT is set
# the script keeps there, after every step, status.txt and gpu-results.tar.gz (all of $RESULTS);
# whatever it had finished when a lease ends still comes back. Unpack the archive under
# benchmarks/results/ and commit it.
#
# DEADLINE_S bounds the whole run (seconds from the start): each step runs under a timeout of the
# time left, and steps not begun by then are skipped. Exit 1 if any step failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-benchmarks/results/gpu-$(date +%Y%m%d)}
RESULTS=${RESULTS%/}
DEADLINE_S=${DEADLINE_S:-480}
ALL_STEPS=(environment nvidia-smi crosscheck-gpu-highest crosscheck-gpu-default lowering sharding
           bench-gpu tests crosscheck-cpu bench-cpu)

command_of() {  # the command line of step $1, writing its results under $RESULTS
    local results
    results=$(printf %q "$RESULTS")  # quoted: the line runs through bash -c
    case $1 in
        environment) echo "$PYTHON -c 'import jax, jaxlib; print(jax.__version__, jaxlib.__version__); print(jax.devices()); [print(d.device_kind) for d in jax.devices()]'" ;;
        nvidia-smi) echo "nvidia-smi" ;;
        crosscheck-gpu-highest) echo "$PYTHON -m convgrad.cli crosscheck --platform gpu --precision highest --json $results/crosscheck-gpu-highest.json" ;;
        crosscheck-gpu-default) echo "$PYTHON -m convgrad.cli crosscheck --platform gpu --precision default --json $results/crosscheck-gpu-default.json" ;;
        lowering) echo "$PYTHON -m convgrad.cli crosscheck --lower-only cpu,cuda,rocm,tpu --json $results/lowering.json" ;;
        sharding) echo "$PYTHON -m pytest -q -p no:cacheprovider tests/test_sharding.py" ;;
        bench-gpu) echo "$PYTHON -m convgrad.cli bench --out $results/bench-gpu" ;;
        tests) echo "$PYTHON -m pytest -q -p no:cacheprovider" ;;
        crosscheck-cpu) echo "$PYTHON -m convgrad.cli crosscheck --platform cpu --json $results/crosscheck-cpu.json" ;;
        bench-cpu) echo "env JAX_PLATFORMS=cpu $PYTHON -m convgrad.cli bench --dtypes float32 --out $results/bench-cpu" ;;
        *) return 1 ;;
    esac
}

keep() {  # copy what is done so far to $OUT, the folder the device tool brings back
    [ -n "${OUT:-}" ] || return 0
    mkdir -p "$OUT"
    cp "$RESULTS/status.txt" "$OUT/status.txt"
    tar -czf "$OUT/gpu-results.tar.gz.part" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")" \
        && mv "$OUT/gpu-results.tar.gz.part" "$OUT/gpu-results.tar.gz"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${ALL_STEPS[@]}")
for name in "${steps[@]}"; do
    command_of "$name" > /dev/null || { echo "unknown step (=$name); steps: ${ALL_STEPS[*]}" >&2; exit 2; }
done
mkdir -p "$RESULTS"
start=$SECONDS
status=0
: > "$RESULTS/status.txt"
for name in "${steps[@]}"; do
    left=$((DEADLINE_S - (SECONDS - start)))
    if [ "$left" -le 0 ]; then
        echo "$name skipped" >> "$RESULTS/status.txt"
        continue
    fi
    line=$(command_of "$name")
    case $name in bench-*) mkdir -p "$RESULTS/$name" ;; esac
    echo "== $name (at most ${left}s): $line"
    timeout --kill-after=10 "$left" bash -c "$line" > "$RESULTS/$name.log" 2>&1
    rc=$?
    echo "$name $rc" >> "$RESULTS/status.txt"
    tail -n 25 "$RESULTS/$name.log"
    [ "$rc" -eq 0 ] || status=1
    keep
done
keep
echo "results in $RESULTS; step exit codes (124: timed out):"
cat "$RESULTS/status.txt"
exit "$status"
