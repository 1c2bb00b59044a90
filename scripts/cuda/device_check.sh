#!/usr/bin/env bash
# The CUDA check, on a machine with an NVIDIA GPU, from the bundle that
# scripts/cuda/build_bundle.sh made (.cuda-bundle/kiln-cuda.tar.xz; no Rust needed here):
#
#   1. the GPU and the libraries the binaries load;
#   2. the whole test suite, with cuda:0 as a target of every value/dtype/no-panic suite
#      (KILN_TEST_REQUIRE_GPU=1: a suite that cannot open cuda:0 fails instead of passing
#      on the cpu alone);
#   3. `kiln doctor --matrix` on cuda:0 (both x64 modes) and `kiln train --device cuda:0`;
#   4. the engine benchmarks (ndarray and candle on the cpu, candle on cuda:0, one run).
#
#   bash scripts/cuda/device_check.sh            # logs to $OUT (or ./cuda-results)
#
# Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RESULTS=${OUT:-$ROOT/cuda-results}
mkdir -p "$RESULTS"
B=$(mktemp -d)
tar -C "$B" -xJf .cuda-bundle/kiln-cuda.tar.xz || exit 1
BIN=$B/bin
status=0
step() { echo "== $*" | tee -a "$RESULTS/summary.txt"; }

# The test binaries find their data through the path the crate had when it was built.
built=$(cat "$BIN/ROOT" 2>/dev/null || echo /work/main)
if [ ! -e "$built/crates/kiln/tests/data" ]; then
    mkdir -p "$(dirname "$built")" && ln -sfn "$ROOT" "$built"
fi

# The CUDA libraries: the driver's libcuda, and cuBLAS/cuRAND/NVRTC/cudart 13 wherever this
# machine keeps them (its Python packages, on the lent machines).
libdirs=$(find /usr/local/nvidia /usr/local/cuda* /usr/lib /opt /usr/local/lib -xdev \
    \( -name 'libcuda.so.1' -o -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' \
    -o -name 'libcurand.so.10' -o -name 'libnvrtc.so.13' -o -name 'libcudart.so.13' \) \
    -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
export LD_LIBRARY_PATH=${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step "bundle $(cat "$BIN/COMMIT") $(test -s "$BIN/DIRTY" && echo '(with uncommitted changes)')"
step "gpu"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$RESULTS/summary.txt"
ldd "$BIN/kiln" | grep -E 'cuda|cublas|curand|nvrtc|not found' | tee -a "$RESULTS/summary.txt"
"$BIN/kiln" devices >"$RESULTS/devices.txt" 2>&1

step "tests (KILN_TEST_REQUIRE_GPU=1)"
for t in "$BIN"/tests/*; do
    name=$(basename "$t")
    (cd "$built/crates/kiln" && KILN_TEST_REQUIRE_GPU=1 timeout 300 "$t" --nocapture) \
        >"$RESULTS/test-$name.txt" 2>&1
    rc=$?
    line=$(grep -E '^test result' "$RESULTS/test-$name.txt" | tail -1)
    echo "$name: rc=$rc $line" | tee -a "$RESULTS/summary.txt"
    [ $rc -eq 0 ] || status=1
done
grep -h -E '@cuda:0|cuda:0' "$RESULTS"/test-*.txt | grep cases | tee -a "$RESULTS/summary.txt"

step "doctor --matrix --devices cuda:0"
"$BIN/kiln" doctor --matrix --x64 both --engine candle --devices cuda:0 >"$RESULTS/doctor.txt" 2>&1 || status=1
grep -E 'cells:|FAILED' "$RESULTS/doctor.txt" | head -20 | tee -a "$RESULTS/summary.txt"

step "train --device cuda:0"
(cd "$ROOT" && "$BIN/kiln" train --device cuda:0) >"$RESULTS/train.txt" 2>&1 || status=1
tail -4 "$RESULTS/train.txt" | tee -a "$RESULTS/summary.txt"

step "bench engines (ms; ndarray and candle on the cpu, candle on cuda:0)"
(cd "$built/crates/kiln" && timeout 400 "$BIN/benches/engines" --bench) >"$RESULTS/bench.txt" 2>&1 || status=1
grep -E -A1 '^engines/' "$RESULTS/bench.txt" | grep -E 'engines/|time:' | tee -a "$RESULTS/summary.txt"

step "status $status"
exit $status
