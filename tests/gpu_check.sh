#!/usr/bin/env bash
# The GPU verification of the CUDA backend, as prepared runs (device time is scarce). Logs go
# to $OUT (default ./gpu_logs). Every phase is bounded: by its own limit and by BUDGET, the
# seconds the whole run may take (default: unbounded), so a slow or hanging phase still leaves
# the others' results.
#   bash tests/gpu_check.sh check   # build for the local GPU, CUDA tests, compute-sanitizer
#                                   # (memcheck, racecheck), a short benchmark
#   bash tests/gpu_check.sh bench   # the benchmark set against cuDNN (needs a build: 'check')
#   bash tests/gpu_check.sh quick   # build, CUDA tests, float16 benchmarks, then memcheck
# The build wants CUTLASS's headers: the nvidia-cutlass package, or CUTLASS_PATH. On a machine
# without a package index, carry the wheel and point CUTLASS_PATH at its extracted headers:
#   python3 -m zipfile -e nvidia_cutlass-*.whl /tmp/cutlass &&
#     CUTLASS_PATH=/tmp/cutlass/cutlass_library/source bash tests/gpu_check.sh check
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
mode=${1:-check}
deadline=$(( $(date +%s) + ${BUDGET:-1000000} ))

limit() {  # the smaller of $1 seconds and what is left of the budget
  local left=$(( deadline - $(date +%s) ))
  echo $(( left < $1 ? (left > 1 ? left : 1) : $1 ))
}

build() {
  local arch t0
  arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  nvidia-smi -L
  $PY -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"
  t0=$(date +%s)
  TORCH_CUDA_ARCH_LIST=$arch TORCHCONV_CUDA=1 MAX_JOBS=$(nproc) \
    timeout "$(limit 300)" $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1 \
    || { tail -60 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s (sm_$arch)"
  $PY -c "import torchconv; print('CUTLASS tier built:', torchconv._C.cutlass_built())"
}

tests() {
  local t0
  t0=$(date +%s)
  timeout "$(limit 200)" $PY -m pytest tests/test_cuda.py tests/test_modules.py -m cuda -q \
    -n "$(nproc)" --timeout 150 -p no:cacheprovider >"$OUT/tests.log" 2>&1
  echo "tests: rc $? in $(( $(date +%s) - t0 )) s"
  grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -40
}

sanitize() {  # tool
  local t0
  t0=$(date +%s)
  timeout "$(limit 100)" compute-sanitizer --tool "$1" --error-exitcode 9 \
    $PY tests/cuda_sanitizer_subset.py >"$OUT/$1.log" 2>&1
  echo "$1: rc $? in $(( $(date +%s) - t0 )) s"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAIL|failures|Error" "$OUT/$1.log" | head -8
}

bench() {  # name, then the command (an env assignment may come first)
  local name=$1
  shift
  timeout "$(limit 200)" env "$@" >"$OUT/bench_$name.log" 2>&1
  echo "bench $name: rc $?"
  grep -E "geomean|Error|error" "$OUT/bench_$name.log" | head -12
}
B="$PY -m torchconv.bench --device cuda --batch-scale 8 --repeats 5 --min-time 0.05"

case $mode in
  check)
    build
    tests
    sanitize memcheck
    sanitize racecheck
    bench fp16_fwd $B --dtype float16 --layout cl --pass fwd --quick
    ;;
  bench)
    bench fp16 $B --dtype float16 --layout cl --pass all
    bench bf16 $B --dtype bfloat16 --layout cl --pass fwd
    bench bf16_fwdbwd $B --dtype bfloat16 --layout cl --pass fwdbwd
    bench fp16_wmma_fwd TORCHCONV_CUDA_CUTLASS=0 $B --dtype float16 --layout cl --pass fwd
    bench tf32_fwd $B --dtype float32 --layout cl --pass fwd --tf32 on
    bench fp32_fwd $B --dtype float32 --layout cl --pass fwd --tf32 off
    bench fp16_nchw_fwd $B --dtype float16 --layout nchw --pass fwd
    ;;
  quick)
    build
    tests
    bench fp16_fwd $B --dtype float16 --layout cl --pass fwd
    bench fp16_fwdbwd $B --dtype float16 --layout cl --pass fwdbwd
    sanitize memcheck
    bench tf32_fwd $B --dtype float32 --layout cl --pass fwd --tf32 on
    bench fp16_bwd $B --dtype float16 --layout cl --pass bwd_input
    bench fp16_wgrad $B --dtype float16 --layout cl --pass bwd_weight
    ;;
  *)
    echo "usage: $0 check|bench|quick" >&2
    exit 2
    ;;
esac
