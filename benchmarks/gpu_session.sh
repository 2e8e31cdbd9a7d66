#!/usr/bin/env bash
# One GPU measurement job per call of the lent-GPU tool (10 minutes a call; at most 8 files
# come back, so everything is packed into one tarball under $OUT).
#
#   bash benchmarks/gpu_session.sh ssd       # issue 6: the full same-run SSD table
#   bash benchmarks/gpu_session.sh sweep     # issue 6: launch configurations of our kernels
#   bash benchmarks/gpu_session.sh quick     # issue 6: ours (chunk 64) and mamba_ssm at B1 T8K and B8 T2K
#   bash benchmarks/gpu_session.sh breakdown # issue 6: our kernels by device time, and the step's idle time
#   bash benchmarks/gpu_session.sh mixers    # issue 6: eager and compiled mixers, with profiles
#   bash benchmarks/gpu_session.sh decode    # issue 4: compiled decode at 32K (batch 1 and 8), profiles
#   bash benchmarks/gpu_session.sh train     # issue 5: the small presets compiled at T=2048 and 8192
#   bash benchmarks/gpu_session.sh autotune  # issue 4: decode at 32K, batch 1, compiled with max-autotune
#   bash benchmarks/gpu_session.sh test      # the Triton and mamba_ssm plugin tests on the GPU
#   bash benchmarks/gpu_session.sh mixers-compiled  # the mixers compiled only, no profiles (shorter)
#   bash benchmarks/gpu_session.sh mixers-profile   # compiled transmamba / mamba2 (ours) / transformer, profiled
#   bash benchmarks/gpu_session.sh regsweep         # issue 6: register caps / programs per SM at chunk 32 and 64
#   bash benchmarks/gpu_session.sh test-conv        # the fused causal-conv tests on the GPU
#   bash benchmarks/gpu_session.sh micro            # issue 6: prefix-attention groupings, rotary table vs inline
#   bash benchmarks/gpu_session.sh chunks           # issue 6: our SSD at chunk 32 and 64, every shape, no peers
#   bash benchmarks/gpu_session.sh conv             # issue 6: the fused conv vs inductor's, tiles of its backward
#   bash benchmarks/gpu_session.sh limits           # issue 6: the T=64K forward split (walk vs read-out, kernels)
#
# Several jobs in one call run one after the other (``gpu_session.sh ssd autotune``), one
# tarball each.
#
# Where zoo or pydantic cannot be imported (the lent H200), the wheels in .whl (mamba-ssm,
# pydantic; docs/benchmarks.md) are installed first. Each step has its own time limit, so a slow step cannot take the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: gpu_session.sh JOB... (the jobs are listed at the top of this script)" >&2; exit 2; }
out="${OUT:-runs/gpu}"
mkdir -p "$out"

if ! python3 -c "import pydantic, zoo" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -1
  export PYTHONPATH="$PYTHONPATH:$PWD"
fi
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$out/setup.txt" 2>&1
cat "$out/setup.txt"

step() {  # step SECONDS NAME COMMAND...: run with a limit, log to NAME.log, say how it ended
  local limit=$1 name=$2
  shift 2
  local began=$SECONDS
  timeout "$limit" "$@" > "$work/$name.log" 2>&1
  echo "$name: rc=$? after $((SECONDS - began)) s"
}

for job in "$@"; do
work="$(mktemp -d)/$job"
mkdir -p "$work"
cp "$out/setup.txt" "$work/"
case "$job" in
  ssd)
    step 330 ssd python3 benchmarks/gpu_ssd.py --out "$work/gpu_ssd.md"
    ;;
  quick)
    step "${QUICK_LIMIT:-200}" quick python3 benchmarks/gpu_ssd.py --quick --skip-compiled --chunk-sizes 64 --out "$work/gpu_ssd_quick.md"
    ;;
  breakdown)
    step 80 breakdown python3 benchmarks/gpu_ssd.py --breakdown --chunk-sizes 64
    ;;
  mixers-compiled)
    step "${MIXERS_LIMIT:-210}" mixers python3 benchmarks/gpu_mixers.py --seq-len 8192 --compile --no-eager --out "$work/gpu_mixers.md"
    ;;
  mixers-profile)
    step "${MIXERS_LIMIT:-300}" mixers python3 benchmarks/gpu_mixers.py --seq-len 8192 --compile --no-eager --profile \
      --only "${MIXERS_ONLY:-(sdpa + triton),triton kernels,transformer,triton conv}" --out "$work/gpu_mixers.md"
    ;;
  regsweep)
    step 170 sweep32 python3 benchmarks/gpu_ssd.py --no-peers --quick --sweep --chunk-sizes 32 --sweep-chunk 32 \
      --sweep-configs "${SWEEP32:-;maxnreg=168,programs_per_sm=6;programs_per_sm=8;warps=8}" --out "$work/sweep32.md"
    step 110 sweep64 python3 benchmarks/gpu_ssd.py --no-peers --quick --sweep --chunk-sizes 64 --sweep-chunk 64 \
      --sweep-configs "${SWEEP64:-;programs_per_sm=8}" --out "$work/sweep64.md"
    ;;
  micro)
    step 200 micro python3 benchmarks/gpu_micro.py --out "$work/gpu_micro.md"
    ;;
  limits)
    for chunk in 64 32; do
      step 120 "limits$chunk" python3 benchmarks/gpu_ssd.py --forward-limits "${LIMITS:-;programs_per_sm=2}" \
        --sweep-chunk "$chunk" --out "$work/limits$chunk.md"
    done
    ;;
  conv)
    step 200 conv python3 benchmarks/gpu_micro.py --conv-only "${CONV_TILES:-16,64,16;8,64,32;16,32,16;8,128,32;32,32,8}" \
      --out "$work/gpu_conv.md"
    ;;
  chunks)
    step 200 chunks python3 benchmarks/gpu_ssd.py --no-peers --chunk-sizes 32,64 --out "$work/gpu_ssd_chunks.md"
    ;;
  sweep)
    step 200 sweep python3 benchmarks/gpu_ssd.py --no-peers --quick --sweep --out "$work/sweep.md"
    ;;
  mixers)
    step 520 mixers python3 benchmarks/gpu_mixers.py --seq-len 8192 --compile --profile --out "$work/gpu_mixers.md"
    ;;
  decode)
    step 330 decode python3 benchmarks/gpu_decode.py --contexts 32768 --budget-s 280 --out "$work/gpu_decode.json"
    step 200 decode_profile python3 benchmarks/gpu_decode.py --profile --contexts 32768 \
      --presets transmamba-400m@v9 transformer-400m
    ;;
  autotune)
    step 250 autotune python3 benchmarks/gpu_decode.py --contexts 32768 --big-batch 0 --mode max-autotune \
      --budget-s 240 --presets transmamba-400m@v9 transformer-400m mamba2-400m --out "$work/gpu_decode_autotune.json"
    ;;
  train)
    for T in 2048 8192; do
      step 280 "train$T" python3 -m zoo compare transmamba-small transformer-small mamba2-small hybrid-small \
        --task text --seq-len "$T" --batch-size $((32768 / T)) --budget 150 --eval-every 50 --eager-eval \
        --device cuda --precision bf16 --backend ssm=triton --backend converter=triton --no-plot --no-progress \
        --out "$work/train$T"
      find "$work/train$T" -name '*.safetensors' -delete  # checkpoints stay behind
    done
    ;;
  test-conv)
    step 90 pytest env TRITON_INTERPRET=0 python3 -m pytest -v -p no:cacheprovider tests/plugins/test_triton_conv.py
    ;;
  test)
    step "${TEST_LIMIT:-500}" pytest env TRITON_INTERPRET=0 python3 -m pytest -v -p no:cacheprovider tests/plugins
    ;;
  *)
    echo "unknown job $job; see the list at the top of this script" >&2
    continue
    ;;
esac
tar czf "$out/$job.tgz" -C "$(dirname "$work")" "$job"
tail -n 25 "$work"/*.log "$work"/*.md 2>/dev/null | cut -c1-220
echo "results: $out/$job.tgz"
done
