#!/usr/bin/env bash
# The GPU verification of the CUDA backend, as one prepared run (device time is scarce):
# build for the local GPU, the CUDA tests, compute-sanitizer on a subset, then benchmarks
# against cuDNN. Logs go to $OUT (default ./gpu_logs); each phase has its own time limit so
# a hang in one still leaves the others' results.
#   bash tests/gpu_check.sh [bench]     # 'bench': the long benchmark set (else a short one)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"

t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=$arch TORCHCONV_CUDA=1 MAX_JOBS=$(nproc) \
  timeout 300 $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1 \
  || { tail -60 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s (sm_$arch)"

t0=$(date +%s)
timeout 240 $PY -m pytest tests/test_cuda.py tests/test_modules.py -m cuda -q -n 8 \
  --timeout 200 -p no:cacheprovider >"$OUT/tests.log" 2>&1
echo "tests: rc $? in $(( $(date +%s) - t0 )) s"
grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -40

for tool in memcheck racecheck; do
  t0=$(date +%s)
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 \
    $PY tests/cuda_sanitizer_subset.py >"$OUT/$tool.log" 2>&1
  echo "$tool: rc $? in $(( $(date +%s) - t0 )) s"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAIL|failures" "$OUT/$tool.log" | head -8
done

bench() {  # name, then bench arguments
  local name=$1; shift
  timeout 150 $PY -m torchconv.bench --device cuda --batch-scale 8 --repeats 5 --min-time 0.05 \
    "$@" >"$OUT/bench_$name.log" 2>&1
  echo "bench $name: rc $?"
  grep -E "geomean|Error|error" "$OUT/bench_$name.log" | head -12
}
if [ "${1:-}" = bench ]; then
  bench fp16 --dtype float16 --layout cl --pass all
  bench bf16 --dtype bfloat16 --layout cl --pass fwd
  bench tf32 --dtype float32 --layout both --pass fwd --tf32 on
  bench fp32 --dtype float32 --layout cl --pass fwd --tf32 off
else
  bench fp16 --dtype float16 --layout cl --pass fwd
  bench fp16bwd --dtype float16 --layout cl --pass fwdbwd --quick
fi
