#!/usr/bin/env bash
# Runs every cargo-fuzz target of crates/kiln/fuzz for SECONDS each (default 120), on stable
# Rust (`--sanitizer none`: libFuzzer's coverage guidance without ASan, which needs nightly),
# seeded with the fixtures (NumPy's, Keras's and kiln's files). Crashes land in
# crates/kiln/fuzz/artifacts/<target>/; copy one into crates/kiln/tests/data/fuzz/<target>/ to
# keep it as a regression that `cargo test` replays.
#   cargo install cargo-fuzz && scripts/fuzz.sh 300
set -euo pipefail
cd "$(dirname "$0")/../crates/kiln/fuzz"
secs="${1:-120}"
data=../tests/data
seed() { mkdir -p "corpus/$1"; shift; for f in "$@"; do [ -f "$f" ] && cp "$f" corpus/"$t"/ ; done; }
for t in npy npz safetensors h5 keras kiln model_config; do mkdir -p "corpus/$t"; done
t=npy; seed npy $data/npy/*.npy
t=npz; seed npz $data/npy/*.npz
t=safetensors; seed safetensors $data/npy/*.safetensors
t=keras; seed keras $data/keras/*.keras
for k in $data/keras/*.keras; do
  n=$(basename "$k" .keras)
  python3 - "$k" "corpus/h5/$n.h5" "corpus/model_config/$n.json" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
if "model.weights.h5" in z.namelist():
    open(sys.argv[2], "wb").write(z.read("model.weights.h5"))
open(sys.argv[3], "wb").write(z.read("config.json"))
PY
done
[ -n "$(ls corpus/kiln)" ] || (cd ../../.. && cargo run -q -p kiln --example export_keras -- /tmp/kiln-fuzz-seeds >/dev/null && \
  cargo run -q -p kiln-cli -- convert /tmp/kiln-fuzz-seeds/kiln_mlp.keras crates/kiln/fuzz/corpus/kiln/mlp.kiln >/dev/null)
cargo fuzz build --sanitizer none -O
for t in npy npz safetensors h5 keras kiln model_config; do
  echo "== $t ($secs s)"
  cargo fuzz run --sanitizer none -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 2>&1 \
    | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|SUMMARY|crash-|cov:" | tail -3
done
