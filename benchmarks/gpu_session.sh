#!/usr/bin/env bash
# The driver of every GPU measurement: each JOB runs its benchmark commands, each command
# under its own time limit (so one slow step cannot take the rest), and writes its logs and
# reports to OUT_DIR/JOB/. docs/benchmarks.md names the job behind each table.
#
#   bash benchmarks/gpu_session.sh [--out OUT_DIR] [--tar] JOB...     (OUT_DIR defaults to runs/bench)
#
#   ssd              the Triton SSD vs mamba_ssm vs compiled PyTorch, every shape, same run
#   quick            ours (chunk 64) and mamba_ssm at B1 T8K and B8 T2K
#   ssd-peers        ours (chunk 64), mamba_ssm and fla's chunk_simple_gla (forward) at B8 T8K, B1 T64K and B8 T2K,
#                    each forward against its byte floor (no compiled PyTorch peer)
#   chunks           ours at chunk 32 and 64, every shape, no peers
#   sweep            launch configurations of our kernels
#   regsweep         register caps and programs per SM at chunk 32 and 64
#   breakdown        our kernels by device time, and the host time of a step
#   limits           the T=64K forward split: whole forward vs the state walk alone
#   mixers           eager and compiled mixers at T=8192, with profiles
#   mixers-compiled  the mixers compiled only, no profiles (shorter)
#   mixers-profile   compiled transmamba / mamba2 (ours) / transformer, profiled (MIXERS_ONLY picks rows)
#   micro            prefix-attention groupings, rotary table vs inline
#   conv             the Triton causal conv vs inductor's, its backward kernels (two_pass, fused, staged) and
#                    their tiles (CONV_TILES), its forward tiles (CONV_FWD)
#   norm             the Triton gated RMSNorm vs inductor's, then transmamba-400m training at T=8192
#                    with norm: torch and norm: triton (the A/B that decides norm's auto on CUDA)
#   states           transmamba-400m and mamba2-400m training at T=8192 with the SSD's chunk states
#                    saved and recomputed (tokens/s and peak memory: the A/B that decides the default)
#   norm-output      transmamba-400m and mamba2-400m training at T=8192 (SSD states recomputed) with the
#                    gated norm's output saved and recomputed (the A/B that decides norm's output default)
#   conv-output      transmamba-400m and mamba2-400m training at T=8192 (the defaults otherwise) with the
#                    Triton conv's outputs saved and recomputed (the A/B that decides conv's output default)
#   ac               transformer, transmamba and mamba2 400m training at T=8192 under each activation
#                    checkpointing policy in AC_POLICIES (default "none cheap"; "selective" too; SSD states
#                    recomputed): speed and peak memory
#   decode           compiled decode at 32K context (batch 1 and 8), then kernel profiles
#   autotune         decode at 32K, batch 1, compiled with max-autotune
#   train            the small presets compiled on the Triton SSD at T=2048 and 8192
#   throughput       training tokens/s, peak memory, MFU of the 400m presets (THROUGHPUT_ARGS)
#   mqar             the four small presets (MQAR_SIZE: another size) on MQAR (T = MQAR_T, default 2048; MQAR_ITEMS pairs, default 64;
#                    vocabulary 256): MQAR_STEPS steps (default 300) of 32,768 tokens, learning rates MQAR_LRS
#                    (default 1e-3,3e-3,1e-2; MQAR_LRS_<model> overrides one model's) x MQAR_SEEDS seeds (default 1)
#                    from MQAR_SEED (default 0), trained on MQAR_ITEMS pairs or on the mixture MQAR_TRAIN_ITEMS
#                    (e.g. 4,8,16,32,64; zoo's --train-items), at the lengths MQAR_TRAIN_SEQ_LENS (e.g.
#                    256,512,1024,2048; zoo's --train-seq-lens; default MQAR_T); MQAR_WARMUP warm-up steps (default: zoo's 5% of the
#                    steps); MQAR_MODELS picks models; every (model, rate, seed)
#                    its own process, side by side (small models leave the GPU mostly idle), deadline MQAR_DEADLINE s
#                    (default 470); MQAR_ACCUM micro-batches per step (default 1; each process holds ~8.5 GiB at
#                    T = 2048 without it); merged with zoo compare --merge, and runs of several calls merge the same way
#   text             the four small presets on byte-level text (TEXT_DATA, default builtin:pylib, the standard
#                    library's source) at T = TEXT_T (default 2048): TEXT_STEPS steps (default 400) of 32,768 tokens,
#                    learning rates TEXT_LRS (default 1e-3,3e-3,1e-2; TEXT_LRS_<model> overrides one model's, a
#                    character outside [A-Za-z0-9_] in the model's name read as _) x
#                    TEXT_SEEDS seeds (default 1) from TEXT_SEED (default 0), every (model, rate, seed) its own process,
#                    side by side, deadline TEXT_DEADLINE s (default 470); TEXT_MODELS picks models; TEXT_ACCUM
#                    micro-batches per step (default 1; more keep less memory per process); merged with
#                    zoo compare --merge, like mqar (a later call's seeds merge with this one's)
#   phonebook        the CPU recall specs (PB_SPECS, default docs/experiments/cpu-mqar: PB_MODELS, default
#                    "transmamba transmamba-attention transformer transformer-conv mamba2 hybrid") on the phone book (T = PB_T, default 256;
#                    PB_ITEMS entries, default 32; vocabulary PB_VOCAB, default 64): PB_STEPS steps (default 1500) of
#                    PB_BATCH sequences (default 128), trained on the mixture PB_TRAIN_ITEMS (default 4,8,16,32),
#                    warm-up PB_WARMUP steps (default a fifth of the steps), rate PB_LRS (default 3e-3; PB_LRS_<model>
#                    overrides one model's) x seeds PB_SEEDS (default "0 1 2"), fp32, every run its own process,
#                    side by side, deadline PB_DEADLINE s (default 470); merged with zoo compare --merge
#   table9           the schedule-robustness experiment (docs/experiments/table9-cpu) on the GPU: recipes
#                    T9_RECIPES (default "v9 attention mixture random"; the attention-only recipe sets the
#                    spread's floor) x seeds T9_SEEDS (default "0 1 2"), T9_STEPS steps (default 1500: ten times the CPU run's
#                    tokens), batch T9_BATCH (default 8) of T = 256 on T9_DATA (default builtin), deadline
#                    T9_DEADLINE s (default 470), each evaluated under v1..v9, attention and ssm; side by side;
#                    T9_D_MODEL=W trains the same recipes at width W (make_specs.py --d-model writes the
#                    plain and gd- recipes there, not g8-* or transformer). Measured on one H100 with
#                    T9_BATCH=32 T9_STEPS=800: nine d_model-64 runs side by side take about 130 s, nine at
#                    d_model 256 about 250 s (3.3 steps/s each), so T9_DEADLINE must exceed that
#   test             the Triton and mamba_ssm plugin tests, the conv tests and the SSD gate's GPU check on the GPU
#   test-conv        the causal-conv tests on the GPU
#   test-norm        the gated-norm tests on the GPU
#
# Several jobs run one after the other. --tar also packs each job's folder into OUT_DIR/JOB.tgz
# (for machines that hand back only a few files). On a machine without network where zoo or
# pydantic cannot be imported, the wheels in .whl (mamba-ssm, pydantic; docs/install.md) are
# installed into a private site folder first.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/runs/bench"
tar=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --tar) tar=1; shift ;;
    --) shift; break ;;
    -*) echo "unknown option $1; usage: gpu_session.sh [--out OUT_DIR] [--tar] JOB..." >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: gpu_session.sh [--out OUT_DIR] [--tar] JOB... (jobs listed at the top of this script)" >&2; exit 2; }
mkdir -p "$out" && out="$(cd "$out" && pwd)"
cd "$repo"

if ! python3 -c "import pydantic, zoo" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  site="$(mktemp -d)/site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "installing .whl failed" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
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

stop_all() {  # end the side-by-side steps in pids (each a subshell running `timeout`, which passes it on)
  for pid in "${pids[@]}"; do pkill -TERM -P "$pid"; kill "$pid"; done 2> /dev/null
  exit 130
}

join_runs() {  # join_runs NAME DIR PATTERN: wait for the side-by-side runs in pids, merge DIR/PATTERN/runs.jsonl
  # into the job's folder (compare.json, compare.md), beside a copy of each run's journal (RUN.runs.jsonl): a
  # device transfer that leaves out deeply nested run folders still brings back what later merges need.
  local name=$1 dir=$2 pattern=$3 journal run
  wait "${pids[@]}"
  trap - INT TERM
  # shellcheck disable=SC2086  # PATTERN is a glob
  for journal in "$dir"/$pattern/runs.jsonl; do
    [ -f "$journal" ] || continue
    run=$(basename "$(dirname "$journal")")
    cp "$journal" "$work/$run.runs.jsonl"
  done
  # shellcheck disable=SC2086
  step 60 "$name" python3 -m zoo compare --merge "$dir"/$pattern/runs.jsonl --out "$work" --no-plot
  find "$work" -name '*.safetensors' -delete
}

small_grid() {  # small_grid JOB PREFIX STEPS TASK_ARG...: the small (or PREFIX_SIZE) presets on one task (`mqar`, `text`)
  # Every (model, rate, seed) is its own `zoo compare` process, side by side, then all are merged. Read from
  # PREFIX_*: SIZE (preset size, default small), T (default 2048), ACCUM (micro-batches per step, default 1), MODELS, LRS (default 1e-3,3e-3,1e-2;
  # LRS_<model> overrides one model's), SEEDS (default 1) from SEED (default 0), STEPS (default STEPS), DEADLINE
  # (seconds, default 470). Returns 1 (nothing run) when the settings cannot make a 32,768-token step.
  # Each run's log gets a progress line (rate, ETA, loss) every twentieth of its steps, and its
  # metrics.jsonl every step, so a run the deadline ends still shows how far it got.
  local job=$1 prefix=$2 steps=$3
  shift 3
  setting() { local name="${prefix}_$1"; echo "${!name:-$2}"; }
  local size T accum first model lr seed lrs_name
  size=$(setting SIZE small) T=$(setting T 2048) accum=$(setting ACCUM 1) first=$(setting SEED 0)
  if ! [[ $T =~ ^[0-9]+$ && $accum =~ ^[0-9]+$ ]] || (( T < 1 || accum < 1 || 32768 % (T * accum) != 0 )); then
    echo "$job: ${prefix}_T x ${prefix}_ACCUM ($T x $accum) must divide the 32,768 tokens of a step; skipped" \
      | tee "$work/$job.log"
    return 1
  fi
  pids=()
  trap stop_all INT TERM  # side-by-side runs end with the script
  for model in $(setting MODELS "transmamba transformer mamba2 hybrid"); do
    lrs_name="${prefix}_LRS_${model//[^A-Za-z0-9_]/_}"
    for lr in $(echo "${!lrs_name:-$(setting LRS 1e-3,3e-3,1e-2)}" | tr , ' '); do
      for seed in $(seq "$first" $((first + $(setting SEEDS 1) - 1))); do
        OMP_NUM_THREADS=1 step "$(setting DEADLINE 470)" "${job}_T${T}_${model}_lr${lr}_seed$seed" python3 -m zoo compare \
          "$model-$size" "$@" --seq-len "$T" --lr "$lr" --seeds 1 --seed "$seed" --steps "$(setting STEPS "$steps")" \
          --batch-size $((32768 / T / accum)) --grad-accum "$accum" --eval-every 100 --no-compile --device cuda \
          --precision bf16 --no-plot --out "$work/T$T/$model-lr$lr-seed$seed" &
        pids+=($!)
      done
    done
  done
  if (( ${#pids[@]} == 0 )); then
    trap - INT TERM
    echo "$job: no runs (${prefix}_MODELS, ${prefix}_LRS or ${prefix}_SEEDS is empty)"
    return 1
  fi
  join_runs "${job}_T${T}_merge" "$work/T$T" "*"
}

for job in "$@"; do
work="$out/$job"
mkdir -p "$work"
cp "$out/setup.txt" "$work/"
case "$job" in
  ssd)
    step 330 ssd python3 benchmarks/gpu_ssd.py --out "$work/gpu_ssd.md"
    ;;
  ssd-peers)
    step "${SSD_PEERS_LIMIT:-400}" ssd-peers python3 benchmarks/gpu_ssd.py --shapes 8x8192,1x65536,8x2048 --skip-compiled \
      --chunk-sizes 64 --out "$work/gpu_ssd_peers.md"
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
    step 200 conv python3 benchmarks/gpu_micro.py \
      --conv-only "${CONV_TILES:-16,64,16;fused:16,64,16;staged:16,64,16;staged:32,64,8;staged:16,128,16;staged:8,64,32;staged:16,64,16,8}" \
      --conv-fwd "${CONV_FWD:-64,128;32,128;64,256;32,256,8;128,64;64,128,8}" \
      --out "$work/gpu_conv.md"
    ;;
  norm)
    step 200 norm python3 benchmarks/gpu_micro.py --norm-only --out "$work/gpu_norm.md"
    for name in torch triton; do
      step "${NORM_TRAIN_LIMIT:-280}" "train_norm_$name" python3 -m zoo bench --suite train --models transmamba \
        --size 400m --seq-lens 8192 --steps 10 --warmup 3 --backend "norm=$name" --no-plot --out "$work/train_norm_$name"
    done
    ;;
  states)
    for states in save recompute; do
      ssd="triton:states=$states"
      step "${STATES_TRAIN_LIMIT:-280}" "train_states_$states" python3 -m zoo bench --suite train \
        --models transmamba mamba2 --size 400m --seq-lens 8192 --steps 10 --warmup 3 --backend "ssm=$ssd" \
        --backend "converter=$ssd" --no-plot --out "$work/train_states_$states"
    done
    ;;
  norm-output)
    for output in save recompute; do
      step "${NORM_OUTPUT_TRAIN_LIMIT:-280}" "train_norm_output_$output" python3 -m zoo bench --suite train \
        --models transmamba mamba2 --size 400m --seq-lens 8192 --steps 10 --warmup 3 \
        --backend "ssm=triton:states=recompute" --backend "converter=triton:states=recompute" \
        --backend "norm=torch:output=$output" --no-plot --out "$work/train_norm_output_$output"
    done
    ;;
  conv-output)
    for output in save recompute; do
      step "${CONV_OUTPUT_TRAIN_LIMIT:-280}" "train_conv_output_$output" python3 -m zoo bench --suite train \
        --models transmamba mamba2 --size 400m --seq-lens 8192 --steps 10 --warmup 3 \
        --backend "conv=triton:output=$output" --no-plot --out "$work/train_conv_output_$output"
    done
    ;;
  ac)
    for ac in ${AC_POLICIES:-none cheap}; do
      step "${AC_TRAIN_LIMIT:-290}" "train_ac_$ac" python3 -m zoo bench --suite train \
        --models transformer transmamba mamba2 --size 400m --seq-lens 8192 --steps 6 --warmup 2 --ac "$ac" \
        --backend "ssm=triton:states=recompute" --backend "converter=triton:states=recompute" --no-plot \
        --out "$work/train_ac_$ac"
    done
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
  throughput)
    step "${THROUGHPUT_LIMIT:-570}" throughput python3 benchmarks/train_throughput.py --budget-s "${THROUGHPUT_BUDGET:-450}" \
      ${THROUGHPUT_ARGS:-} --out "$work"
    ;;
  mqar)
    small_grid mqar MQAR 300 --task mqar --vocab 256 --num-items "${MQAR_ITEMS:-64}" \
      ${MQAR_TRAIN_ITEMS:+--train-items "$MQAR_TRAIN_ITEMS"} ${MQAR_TRAIN_SEQ_LENS:+--train-seq-lens "$MQAR_TRAIN_SEQ_LENS"} \
      ${MQAR_WARMUP:+--warmup "$MQAR_WARMUP"} || continue
    ;;
  text)
    small_grid text TEXT 400 --task text --data "${TEXT_DATA:-builtin:pylib}" || continue
    ;;
  phonebook)
    specs=${PB_SPECS:-docs/experiments/cpu-mqar}
    T=${PB_T:-256}
    steps=${PB_STEPS:-1500}
    pids=()
    trap stop_all INT TERM
    for model in ${PB_MODELS:-transmamba transmamba-attention transformer transformer-conv mamba2 hybrid}; do
      lrs_name="PB_LRS_${model//[^A-Za-z0-9_]/_}"
      for lr in $(echo "${!lrs_name:-${PB_LRS:-3e-3}}" | tr , ' '); do
        for seed in ${PB_SEEDS:-0 1 2}; do
          OMP_NUM_THREADS=1 step "${PB_DEADLINE:-470}" "phonebook_T${T}_${model}_lr${lr}_seed$seed" python3 -m zoo compare \
            "$model=$specs/$model.json" --task phonebook --seq-len "$T" --vocab "${PB_VOCAB:-64}" \
            --num-items "${PB_ITEMS:-32}" --train-items "${PB_TRAIN_ITEMS:-4,8,16,32}" --steps "$steps" \
            --warmup "${PB_WARMUP:-$((steps / 5))}" --batch-size "${PB_BATCH:-128}" --eval-every "${PB_EVAL_EVERY:-100}" \
            --lr "$lr" --seeds 1 --seed "$seed" --no-compile --device cuda --precision fp32 --no-plot \
            --out "$work/T$T/$model-lr$lr-seed$seed" &
          pids+=($!)
        done
      done
    done
    join_runs "phonebook_T${T}_merge" "$work/T$T" "*"
    ;;
  table9)
    specs=docs/experiments/table9-cpu
    if [ -n "${T9_D_MODEL:-}" ]; then  # the same recipes in a wider model, specs written here
      specs="$work/specs-d$T9_D_MODEL"
      python3 docs/experiments/table9-cpu/make_specs.py --d-model "$T9_D_MODEL" --out "$specs" || continue
    fi
    pids=()
    trap stop_all INT TERM
    for recipe in ${T9_RECIPES:-v9 attention mixture random}; do
      for seed in ${T9_SEEDS:-0 1 2}; do
        OMP_NUM_THREADS=1 step "${T9_DEADLINE:-470}" "table9_${recipe}_$seed" python3 -m zoo compare \
          "$recipe=$specs/$recipe.json" --task text --data "${T9_DATA:-builtin}" --seq-len 256 --steps "${T9_STEPS:-1500}" \
          --batch-size "${T9_BATCH:-8}" --lr 3e-3 --seeds 1 --seed "$seed" --no-compile --device cuda --precision fp32 \
          --eval-schedules v1,v2,v3,v4,v5,v6,v7,v8,v9,attention,ssm --no-plot \
          --out "$work/$recipe-seed$seed" &
        pids+=($!)
      done
    done
    join_runs table9_merge "$work" "*-seed*"
    ;;
  test-conv)
    step 90 pytest env TRITON_INTERPRET=0 python3 -m pytest -v -p no:cacheprovider tests/plugins/test_triton_conv.py
    ;;
  test-norm)
    step 90 pytest env TRITON_INTERPRET=0 python3 -m pytest -v -p no:cacheprovider tests/plugins/test_triton_norm.py
    ;;
  test)
    step "${TEST_LIMIT:-500}" pytest env TRITON_INTERPRET=0 python3 -m pytest -v -p no:cacheprovider tests/plugins \
      "tests/training/test_recompute.py::test_ssd_gate_recompute_keeps_the_numbers_on_cuda_with_the_triton_backends"
    ;;
  *)
    echo "unknown job $job; see the list at the top of this script" >&2
    rm -rf "$work"
    continue
    ;;
esac
[ "$tar" = 1 ] && tar czf "$out/$job.tgz" -C "$out" "$job"
tail -n 25 "$work"/*.log "$work"/*.md 2>/dev/null | cut -c1-220
echo "results: $work"
done
