#!/usr/bin/env bash
# Run the GPU benchmark suite on a CUDA machine from a fresh checkout, in one go.
#
#   bash benchmarks/gpu_run.sh                 # the whole gpu suite (about 8 minutes on an H200)
#   bash benchmarks/gpu_run.sh --dry-run       # extra arguments go to benchmarks.run
#
# 1. makes resnet_pl importable (pip install -e . --no-deps; offline machines: without build
#    isolation, else via PYTHONPATH) and installs what is missing where pip can reach an index;
# 2. runs `python -m benchmarks.run --suite gpu` under `timeout 540` (the suite itself starts no
#    new case after its 420 s budget, and rewrites its JSON after every case);
# 3. if the run was cut short, redraws the markdown and plots from the partial JSON;
# 4. copies the results (and a log) to "$OUT" when that variable is set.
# Exit status: the benchmark's (124 if the timeout hit it).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
RESULTS=benchmarks/results
LOG="${OUT:+$OUT/gpu_run.log}"
LOG="${LOG:-$RESULTS/gpu_run.log}"
mkdir -p "$RESULTS" "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

echo "== $(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader

# -- 1. the package and its imports ---------------------------------------------------------
if ! "$PY" -m pip show -q resnet-pl >/dev/null 2>&1; then
    "$PY" -m pip install -q -e . --no-deps --no-build-isolation 2>/dev/null \
        || "$PY" -m pip install -q -e . --no-deps 2>/dev/null \
        || { echo "pip install -e . failed: using PYTHONPATH"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; }
fi
# module:pip-name pairs the suite needs (onnx/onnxruntime only for the ONNX Runtime rows).
for pair in torch:torch torchvision:torchvision numpy:numpy matplotlib:matplotlib \
            onnx:onnx onnxruntime:onnxruntime; do
    mod="${pair%%:*}"; pkg="${pair##*:}"
    if ! "$PY" -c "import $mod" 2>/dev/null; then
        echo "missing $mod: trying pip install $pkg"
        "$PY" -m pip install -q "$pkg" || echo "could not install $pkg (rows needing it are skipped)"
    fi
done
"$PY" -c "import torch, torchvision, resnet_pl; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available())" || exit 3

# -- 2. the suite -----------------------------------------------------------------------------
timeout 540 "$PY" -m benchmarks.run --suite gpu "$@"
rc=$?
echo "== benchmarks.run exited with $rc"

# -- 3. a cut-short run still gets its report ------------------------------------------------
latest="$RESULTS/gpu-cuda-latest.json"
newest_json="$(ls -t "$RESULTS"/gpu-cuda-2*.json 2>/dev/null | head -n 1)"
if [ "$rc" -ne 0 ] && [ -f "$latest" ]; then
    for f in "$latest" "$newest_json"; do
        [ -n "$f" ] && "$PY" -m benchmarks.run --from-json "$f" || true
    done
fi

# -- 4. hand the results back --------------------------------------------------------------
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    for f in "$latest" "${latest%.json}.md" "$newest_json" "${newest_json%.json}.md" \
             "$RESULTS"/gpu-cuda-throughput_vs_batch.png "$RESULTS"/gpu-cuda-speedup.png \
             "$RESULTS"/gpu-cuda-throughput_vs_depth.png; do
        [ -n "$f" ] && [ -f "$f" ] && cp "$f" "$OUT"/
    done
    echo "== copied results to $OUT"
fi
exit "$rc"
