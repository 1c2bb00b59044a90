#!/usr/bin/env bash
# Builds kiln with `--features cuda` on a Linux x86-64 machine that has neither a GPU nor a
# CUDA toolkit, into one compressed bundle for a machine that has both (the lent H100/H200
# machines have CUDA 13.0 and its libraries but no Rust toolchain and no network).
#
#   scripts/cuda/build_bundle.sh        # -> .cuda-bundle/kiln-cuda.tar.xz (git-ignored)
#
# About 15 minutes on 2 cores (nvcc compiles candle's kernels). Then, on the GPU machine, from the repository root: `bash scripts/cuda/device_check.sh`.
#
# What it needs here: Rust, Python's pip (PyPI reachable) and gcc. It fetches, from PyPI,
# NVIDIA's own wheels of CUDA 13.0: nvcc (candle-kernels compiles its kernels to PTX with it)
# and the cuBLAS/cuRAND/NVRTC libraries (candle links them; only their sonames end up in the
# binaries, the GPU machine's own copies are loaded at run time). libcuda.so belongs to the
# driver, which a toolkit-less machine lacks, so the link uses a stub that defines every
# driver function cudarc binds (each returns CUDA_ERROR_NO_DEVICE, so a binary run against the
# stub by mistake reports "no GPU"); the GPU machine's real driver library is loaded instead.
#
# The version is pinned to 13.0 because the GPU machines' driver (580) runs CUDA 13.0: PTX
# written by a newer nvcc carries an ISA version that driver refuses.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=${KILN_CUDA_TOOLS:-$HOME/.cache/kiln-cuda-13.0}
TARGET=${KILN_CUDA_TARGET_DIR:-$ROOT/target/cuda}
OUTDIR=$ROOT/.cuda-bundle
CAP=${CUDA_COMPUTE_CAP:-90} # H100/H200 (sm_90)

if [ ! -x "$TOOLS/py/nvidia/cu13/bin/nvcc" ]; then
    python3 -m pip install -q --disable-pip-version-check --target "$TOOLS/py" \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
        "nvidia-cublas>=13.0,<13.1" nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
fi
CUDA=$TOOLS/py/nvidia/cu13
mkdir -p "$TOOLS/link"
for l in cublas cublasLt nvrtc cudart curand; do
    so=$(ls "$CUDA/lib/lib$l.so."* | grep -v -e alt -e builtins | head -1)
    ln -sf "$so" "$TOOLS/link/lib$l.so"
done

export PATH=$CUDA/bin:$PATH CUDA_ROOT=$CUDA CUDA_PATH=$CUDA CUDA_COMPUTE_CAP=$CAP
export LIBRARY_PATH=$TOOLS/link CARGO_TARGET_DIR=$TARGET

# 1. The driver stub: every driver function cudarc binds (its `cu*` bindings), so the link
# succeeds whatever subset the code uses.
cargo fetch --locked >/dev/null
cudarc=$(cargo metadata --locked --format-version 1 --features kiln/cuda |
    python3 -c 'import json,sys,os
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))')
grep -ohE 'pub unsafe fn cu[A-Z][A-Za-z0-9_]*\(' "$cudarc"/src/driver/sys/*.rs |
    sed -E 's/pub unsafe fn (\w+)\(/\1/' | sort -u |
    awk '{print "int " $1 "(void) { return 100; }"}' >"$TOOLS/link/cuda_stub.c" # CUDA_ERROR_NO_DEVICE
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 "$TOOLS/link/cuda_stub.c" -o "$TOOLS/link/libcuda.so"

# 2. Everything in one build (one feature set, so nothing compiles twice): the CLI, every
# test target of the workspace and the benchmarks.
artifacts=$(cargo test --release --locked --workspace --features kiln/cuda,kiln-cli/cuda \
    --all-targets --no-run --message-format=json |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = m["target"]["kind"][0]
        if kind == "bin" and m["profile"]["test"]:
            kind = "binunit"  # unit tests of the CLI binary, also named kiln
        if kind == "lib":
            kind = "unit"
        print(kind, m["target"]["name"], m["executable"])')
echo "$artifacts"

# 3. Stripped, in one tar, compressed with a dictionary larger than one binary: every
# binary embeds the same candle kernels (11 MB of PTX and a 37 MB library of compiled
# quantized/MoE kernels, as built here), which then compress once.
stage=$(mktemp -d)
mkdir -p "$stage/bin/tests" "$stage/bin/benches"
while read -r kind name exe; do
    case $kind in
    bin) cp "$exe" "$stage/bin/$name" ;;
    unit) cp "$exe" "$stage/bin/tests/unit-$name" ;;
    binunit) cp "$exe" "$stage/bin/tests/unit-bin-$name" ;;
    test) # `cli` runs the kiln binary by its build path; device_check.sh runs it directly.
        if [ "$name" != cli ]; then cp "$exe" "$stage/bin/tests/$name"; fi ;;
    bench) if [ "$name" = engines ]; then cp "$exe" "$stage/bin/benches/$name"; fi ;;
    esac
done <<<"$artifacts"
strip "$stage"/bin/kiln "$stage"/bin/tests/* "$stage"/bin/benches/*
git rev-parse HEAD >"$stage/bin/COMMIT"
echo "$ROOT" >"$stage/bin/ROOT" # the test binaries read their data under this path
git status --porcelain --untracked-files=no | head -20 >"$stage/bin/DIRTY"
mkdir -p "$OUTDIR"
tar -C "$stage" -cf - bin | xz -T1 --lzma2=preset=6,dict=384MiB >"$OUTDIR/kiln-cuda.tar.xz"
rm -rf "$stage"
ls -l "$OUTDIR/kiln-cuda.tar.xz"
