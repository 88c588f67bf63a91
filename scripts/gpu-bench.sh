#!/usr/bin/env bash
# The GPU figures of docs/speed.md, in one run of at most 8 minutes on a CUDA machine. From the
# repository root, with any Python whose torch sees the GPU (no install needed: the repository is put on PYTHONPATH):
#
#   bash scripts/gpu-bench.sh [OUT]        # OUT: where the logs and JSON go (default figures/gpu)
#
# 1. tests/test_gpu.py: eager, compiled and CUDA-graph runtimes on the GPU stream the CPU's labels; fp16 agrees.
# 2. gsv bench at 1024x2048 and 720x960 (W x H: 2048x1024, 960x720): eager, compiled and cuda-graphs in fp32 and
#    fp16, frames already on the GPU; then the fastest and the eager path with frames copied from host memory.
# 3. gsv bench --end-to-end: gsv segment's whole path (decode, model, overlay, encode) on 30 frames of the synthetic
#    street at 2048x1024, eager fp16, to PNGs and to .mp4, beside the model alone on the same frames.
# Each step has a time limit, and each bench writes its JSON after every backend x precision it finishes, so a step
# cut short keeps what it measured; each bench log ends with the markdown table gsv bench prints (docs/speed.md).
set -uo pipefail
OUT=${1:-figures/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
start=$(date +%s)
step() {  # step SECONDS NAME COMMAND...: run with a time limit, log to OUT/NAME.log
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit} s, $(($(date +%s) - start)) s elapsed)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? after $(($(date +%s) - start)) s"
  tail -n 25 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step 120 gpu-tests $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
bench=($PY -m gsvlib bench --device cuda --image-scales 0.75 --intervals-timed 10)
step 130 bench_cuda_1024x2048 "${bench[@]}" --size 1024x2048 --backend eager compiled cuda-graphs \
  --precision fp32 fp16 --json "$OUT/bench_cuda_1024x2048.json"
step 80 bench_cuda_720x960 "${bench[@]}" --size 720x960 --backend eager compiled cuda-graphs \
  --precision fp32 fp16 --json "$OUT/bench_cuda_720x960.json"
step 50 bench_cuda_1024x2048_host "${bench[@]}" --size 1024x2048 --backend eager cuda-graphs --precision fp16 \
  --host-frames --json "$OUT/bench_cuda_1024x2048_host.json"
step 40 bench_cuda_720x960_host "${bench[@]}" --size 720x960 --backend eager cuda-graphs --precision fp16 \
  --host-frames --json "$OUT/bench_cuda_720x960_host.json"
step 20 street_frames $PY scripts/street_frames.py "$OUT/street" --size 1024x2048 --frames 30
step 40 end_to_end_cuda_1024x2048 $PY -m gsvlib bench --device cuda --end-to-end "$OUT/street" --max-frames 30 \
  --precision fp16 --json "$OUT/end_to_end_cuda_1024x2048.json"
echo "gpu-bench: done in $(($(date +%s) - start)) s; results in $OUT"
