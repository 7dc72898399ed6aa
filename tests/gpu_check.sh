#!/usr/bin/env bash
# The GPU verification of the CUDA backend, as prepared runs (device time is scarce). Logs go
# to $OUT (default ./gpu_logs); each phase has its own time limit, so a hang in one still
# leaves the others' results.
#   bash tests/gpu_check.sh check   # build for the local GPU, CUDA tests, compute-sanitizer
#                                   # (memcheck, racecheck), a short benchmark
#   bash tests/gpu_check.sh bench   # the benchmark set against cuDNN (needs a build: 'check')
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
mode=${1:-check}

bench() {  # name, then bench arguments (an env assignment may precede: see below)
  local name=$1; shift
  timeout 200 env "$@" >"$OUT/bench_$name.log" 2>&1
  echo "bench $name: rc $?"
  grep -E "geomean|Error|error" "$OUT/bench_$name.log" | head -12
}
B="$PY -m torchconv.bench --device cuda --batch-scale 8 --repeats 5 --min-time 0.05"

if [ "$mode" = check ]; then
  arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  nvidia-smi -L
  $PY -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"
  t0=$(date +%s)
  TORCH_CUDA_ARCH_LIST=$arch TORCHCONV_CUDA=1 MAX_JOBS=$(nproc) \
    timeout 300 $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1 \
    || { tail -60 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s (sm_$arch)"
  $PY -c "import torchconv; print('CUTLASS tier built:', torchconv._C.cutlass_built())"

  t0=$(date +%s)
  timeout 240 $PY -m pytest tests/test_cuda.py tests/test_modules.py -m cuda -q -n 8 \
    --timeout 200 -p no:cacheprovider >"$OUT/tests.log" 2>&1
  echo "tests: rc $? in $(( $(date +%s) - t0 )) s"
  grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -40

  for tool in memcheck racecheck; do
    t0=$(date +%s)
    timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 \
      $PY tests/cuda_sanitizer_subset.py >"$OUT/$tool.log" 2>&1
    echo "$tool: rc $? in $(( $(date +%s) - t0 )) s"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAIL|failures|Error" "$OUT/$tool.log" | head -8
  done
  bench fp16_fwd $B --dtype float16 --layout cl --pass fwd --quick
elif [ "$mode" = bench ]; then
  bench fp16 $B --dtype float16 --layout cl --pass all
  bench bf16 $B --dtype bfloat16 --layout cl --pass fwd
  bench bf16_fwdbwd $B --dtype bfloat16 --layout cl --pass fwdbwd
  bench fp16_wmma_fwd TORCHCONV_CUDA_CUTLASS=0 $B --dtype float16 --layout cl --pass fwd
  bench tf32_fwd $B --dtype float32 --layout cl --pass fwd --tf32 on
  bench fp32_fwd $B --dtype float32 --layout cl --pass fwd --tf32 off
  bench fp16_nchw_fwd $B --dtype float16 --layout nchw --pass fwd
else
  echo "usage: $0 check|bench" >&2
  exit 2
fi
