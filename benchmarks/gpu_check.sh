#!/usr/bin/env bash
# Every GPU check of vlmerge in one run, ending with one table:
#   1. the pre-training step at the `base` preset in bf16 at 224 px: samples/s, step time, model FLOPs utilisation
#      (benchmarks/pretrain_bench.py, against its plain timm + BERT reference step);
#   2. a 2-process DDP pre-training step (torchrun), where 2 GPUs exist;
#   3. the GPU study (configs/study-gpu.yaml): wall time and its report.
# Usage: bash benchmarks/gpu_check.sh [--cpu-dry-run] [--out DIR]
#   --cpu-dry-run shrinks everything (tiny preset, tiny world, a few steps, one seed) so that the whole script runs
#   on CPU in about a minute; `make test` runs it that way (tests/test_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0; OUT=${OUT:-runs/gpu_check}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1 (usage: gpu_check.sh [--cpu-dry-run] [--out DIR])" >&2; exit 2 ;;
  esac
done
PY=${PY:-.venv/bin/python}; VLMERGE=(${PY} -c "from vlmerge.cli import entry; entry()")
now() { $PY -c "import time; print(time.time())"; }
secs() { $PY -c "print(f'{$2 - $1:.0f}')"; }
mkdir -p "$OUT"; TABLE="$OUT/table.md"
NGPU=0
if [ $DRY = 0 ]; then
  NGPU=$($PY -c 'import torch; print(torch.cuda.device_count())')
  if [ "$NGPU" = 0 ]; then echo "gpu_check: no CUDA device (use --cpu-dry-run to test the script on CPU)" >&2; exit 2; fi
fi
export PYTHONUNBUFFERED=1
echo "| check | figure |" > "$TABLE"; echo "|---|---|" >> "$TABLE"
row() { echo "| $1 | $2 |" >> "$TABLE"; }

# 1. the pre-training step (base, bf16, 224 px on the GPU; its code path on CPU in the dry run)
if [ $DRY = 1 ]; then $PY benchmarks/pretrain_bench.py --cpu-dry-run 2>&1 | tee "$OUT/pretrain_bench.log"
else $PY benchmarks/pretrain_bench.py --presets --steps 10 --repeat 2 2>&1 | tee "$OUT/pretrain_bench.log"; fi
$PY - "$OUT/pretrain_bench.log" >> "$TABLE" <<'PYEOF'
import ast, sys
for l in open(sys.argv[1]):
    l = l.strip()
    if l.startswith('{'):
        o = ast.literal_eval(l)
        mfu = f", MFU {o['mfu']:.1%}" if 'mfu' in o else ''
        print(f"| pre-training step, {o['model']} {o['preset']} ({o['device']}, {o['dtype']}, batch {o['batch']}) | "
              f"{o['s_per_step']} s/step, {o['samples_per_s']} samples/s, {o['tflops']} TFLOP/s{mfu} |")
    elif 'step time =' in l: print(f"| pre-training step, ratio | {l} |")
PYEOF

# 2. DDP: two processes, one per GPU
if [ "$NGPU" -ge 2 ]; then
  cat > "$OUT/ddp.yaml" <<YAML
model: {preset: base}
data: {size: small, image_size: 224}
train: {steps: 20, batch_size: 64, log_every: 5}
stage: agnostic
YAML
  t0=$(now)
  $PY -m torch.distributed.run --standalone --nproc_per_node 2 "$(dirname "$PY")/vlmerge" pretrain "$OUT/ddp.yaml" --out "$OUT/ddp" --no-progress 2>&1 | tail -5
  t1=$(now)
  row "DDP 2 GPUs, base agnostic, 20 steps of batch 64 at 224 px" "$(secs $t0 $t1) s (start-up included)"
else
  row "DDP 2 processes" "skipped: $([ $DRY = 1 ] && echo 'CPU dry run' || echo "$NGPU GPU")"
fi

# 3. the GPU study
CONF=configs/study-gpu.yaml; SETS=(); WORKERS=3
if [ $DRY = 1 ]; then
  WORKERS=1
  SETS=(--set 'model={preset: tiny}' --set 'data.size=tiny' --set 'data.image_size=32' --set 'steps=4' --set 'k_seed=[0, 2]'
        --set 'seeds=[0]' --set 'pretrain.batch_size=8' --set 'pretrain.ckpt_every=0' --set 'finetune.train.steps=2'
        --set 'finetune.train.batch_size=8' --set 'methods=[{method: arithmetic, lambda: 1.0}]' --set 'alpha_curve=[]'
        --set 'gram_batches=1' --set 'naive_steps=paper')
fi
rm -rf "$OUT/study"
t0=$(now)
"${VLMERGE[@]}" study "$CONF" --out "$OUT/study" --workers $WORKERS "${SETS[@]}" > "$OUT/study.log" 2>&1 || { tail -20 "$OUT/study.log"; exit 1; }
t1=$(now)
row "study ($CONF$([ $DRY = 1 ] && echo ', dry run'))" "$(secs $t0 $t1) s wall, $(ls "$OUT/study/cells" | wc -l) cells, report $OUT/study/index.md"

echo; echo "## gpu_check$([ $DRY = 1 ] && echo ' (CPU dry run)')"; echo
cat "$TABLE"
