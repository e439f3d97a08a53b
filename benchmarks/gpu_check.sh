#!/usr/bin/env bash
# GPU check for genreflow's model actors, for a machine lent with a GPU only briefly: one run,
# under 5 minutes, that installs what it needs, then measures side by side on GPU and on CPU
#   1. the model-only limit (musicnn forward pass, patches/s), GPU vs CPU;
#   2. a cold `genreflow run --features musicnn --no-train` over N synthetic clips with the model
#      actors on the GPU (--gpus-per-actor 1) vs on CPUs (--gpus-per-actor 0);
# and prints the ratios. --dry-run runs every step on CPU at a tiny size in the current Python
# environment (nothing installed), so the script is known to work before a GPU is lent.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--clips N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0; CLIPS=1000; SECONDS_PER_CLIP=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1; CLIPS=4; SECONDS_PER_CLIP=3 ;;
        --clips) CLIPS="$2"; shift ;;
        --seconds) SECONDS_PER_CLIP="$2"; shift ;;
        *) echo "usage: $0 [--dry-run] [--clips N] [--seconds S]" >&2; exit 2 ;;
    esac
    shift
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gf-gpu.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== machine"
lscpu | grep 'Model name' || true
echo "bf16 flags: $(grep -o 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
elif [[ $DRY -eq 0 ]]; then
    echo "no nvidia-smi: this machine has no GPU (use --dry-run to check the script on CPU)" >&2
    exit 1
fi

if [[ $DRY -eq 0 ]]; then
    echo "== install (venv in $WORK/venv)"
    python3 -m venv "$WORK/venv" && . "$WORK/venv/bin/activate"
    pip install --quiet . 'tensorflow[and-cuda]' && pip install --quiet --no-deps musicnn==0.1.0
fi
PY=python3
command -v python >/dev/null && PY=python

echo "== model-only limit (musicnn, patches/s)"
cat > "$WORK/limit.py" <<'PY'
import os, sys, time
import numpy as np
from genreflow.features import musicnn_net as net
n, batch = int(sys.argv[1]), int(sys.argv[2])
model = net.load_model("MSD_musicnn", precision="fp32", threads=os.cpu_count())
wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 30).astype(np.float32)
patches = net.make_patches(net.log_mel(wave), net.frames_for(len(wave)))
patches = np.resize(patches, (n,) + patches.shape[1:])
model(patches[:batch])  # warm-up (tracing, device set-up)
start = time.perf_counter()
for i in range(0, n, batch):
    model(patches[i:i + batch])
print(f"{n / (time.perf_counter() - start):.1f}")
PY
PATCHES=$(( CLIPS * SECONDS_PER_CLIP / 3 )); (( PATCHES < 16 )) && PATCHES=16
GPU_LIMIT=$($PY "$WORK/limit.py" "$PATCHES" 64 2>/dev/null | tail -1)
CPU_LIMIT=$(CUDA_VISIBLE_DEVICES="" $PY "$WORK/limit.py" "$PATCHES" 4 2>/dev/null | tail -1)
echo "default device: $GPU_LIMIT patches/s (64 per call)   CPU only: $CPU_LIMIT patches/s (4 per call)"

echo "== cold run, $CLIPS clips x $SECONDS_PER_CLIP s"
$PY - "$WORK/data" "$CLIPS" "$SECONDS_PER_CLIP" <<'PY'
import sys
from genreflow.data.synth import SYNTH_GENRES, genre_clip, write_audio
root, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for i in range(n):
    genre = SYNTH_GENRES[i % len(SYNTH_GENRES)]
    write_audio(f"{root}/raw/{genre}/clip_{i:05d}.wav", genre_clip(genre, seconds, 22050, seed=i), 22050)
PY
printf '[audio]\nduration_s = %s\n' "$SECONDS_PER_CLIP" > "$WORK/g.toml"
$PY -m genreflow index --data-dir "$WORK/data" --config "$WORK/g.toml" >/dev/null
declare -A WALL
for gpus in 1 0; do
    rm -rf "$WORK/data/processed/store"
    start=$(date +%s.%N)
    $PY -m genreflow features --features musicnn --data-dir "$WORK/data" --config "$WORK/g.toml" \
        --workers "$(nproc)" --gpus-per-actor "$gpus" --executor ray | tail -1  # GPU vs CPU actors, both on Ray
    WALL[$gpus]=$(echo "$(date +%s.%N) - $start" | bc)
done
echo "== ratios"
echo "model-only limit, default device / CPU: $(echo "scale=2; $GPU_LIMIT / $CPU_LIMIT" | bc)x"
echo "cold features, actors on GPU: ${WALL[1]} s; on CPU: ${WALL[0]} s; speed-up $(echo "scale=2; ${WALL[0]} / ${WALL[1]}" | bc)x"
[[ $DRY -eq 1 ]] && echo "(dry run: no GPU was used; these are CPU figures that only show the script works)"
exit 0
