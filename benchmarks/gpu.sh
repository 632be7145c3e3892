#!/usr/bin/env bash
# The GPU benchmark in one short script (benchmarks/README.md, "GPU").
#
#   bash benchmarks/gpu.sh           # on the GPU machine: results in $OUT (< 8 minutes on an H200)
#   bash benchmarks/gpu.sh --dry     # anywhere: the same code paths on the CPU, tiny sizes (~1 minute)
#   bash benchmarks/gpu.sh --parts=compiled,accuracy    # a rerun of some parts only
#
# Needs PyTorch (and scikit-learn for the digits accuracy run); NOT Optuna: only prunesearch's torch
# parts are imported. Writes $OUT/gpu_bench.json (updated after every part), $OUT/gpu_log.txt and,
# where nvidia-smi exists, $OUT/nvidia_smi.txt. Without $OUT: benchmarks/results/gpu (or gpu-dry).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=()
PARTS=()
NAME=gpu
for a in "$@"; do
  case "$a" in
    --dry) DRY=(--dry); NAME=gpu-dry ;;
    --parts=?*) PARTS=(--parts "${a#--parts=}") ;;
    *) echo "gpu.sh: unknown argument '$a'; use --dry and/or --parts=LIST" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-benchmarks/results/$NAME}"
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
{
  echo "gpu.sh ${DRY[*]:-} $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname) in $PWD"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)') $(git status --porcelain 2>/dev/null | wc -l) changed files"
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
} 2>&1 | tee "$OUT/gpu_log.txt"
if [ ${#DRY[@]} -eq 0 ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1 || true
fi
# A hard stop below the run call's timeout_s (480): whatever was measured is already in gpu_bench.json.
LIMIT=$([ ${#DRY[@]} -eq 0 ] && echo 450 || echo 300)
timeout -k 10 "$LIMIT" "$PY" benchmarks/gpu_bench.py --out "$OUT" "${DRY[@]}" "${PARTS[@]}" 2>&1 | tee -a "$OUT/gpu_log.txt"
rc=${PIPESTATUS[0]}
echo "gpu.sh: exit $rc; results in $OUT" | tee -a "$OUT/gpu_log.txt"
exit "$rc"
