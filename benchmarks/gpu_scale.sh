#!/usr/bin/env bash
# The GPU checks of issue 15 as one prepared script, for a machine with one or more CUDA GPUs.
#
#   OUT=/path/to/out bash benchmarks/gpu_scale.sh
#
# Stages (each under a timeout, so the whole script fits in about 9 minutes):
#   1. benchmarks/scale.py on CUDA: BPR and LightGCN, ID and MOTOR (PQ 16 x 256, no fine tokens), at
#      10k, 100k and 1M items; FREEDOM at 10k and 100k (docs/benchmarks.md §17 is the CPU table).
#   2. With two or more GPUs: torchrun --nproc_per_node=<GPUs> on toy (nccl), BPR and LightGCN+MOTOR,
#      and the saved model evaluated in one process (the metrics must be equal).
# Results: OUT/machine.txt, OUT/scale (cells, scale.md, scale.png), OUT/ddp_*.json and logs.
set -u
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/machine.txt" 2>&1
python3 -c "import torch, faiss; print('torch', torch.__version__, 'faiss', faiss.__version__,
'gpus', torch.cuda.device_count())" >> "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
P="--motor_quantizer=pq --motor_fine_nbits=None"

echo "== 1: catalogue scale on CUDA"
timeout 200 python3 benchmarks/scale.py --items 10000,100000,1000000 --models BPR,LightGCN --variants id,motor \
    --use_gpu --num_threads 4 --out "$OUT/scale" $P --cells-only
timeout 100 python3 benchmarks/scale.py --items 10000,100000 --models FREEDOM --variants id,motor \
    --use_gpu --num_threads 4 --out "$OUT/scale" $P --cells-only
python3 benchmarks/scale.py --out "$OUT/scale" --report-only

GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  echo "== 2: torchrun on $GPUS GPUs (nccl)"
  for m in BPR LightGCN; do
    extra=""; [ "$m" = LightGCN ] && extra="--motor"
    timeout 120 torchrun --standalone --nproc_per_node="$GPUS" main.py -m $m -d toy $extra --epochs=5 \
        --data_path="$OUT/data" --result_file="$OUT/ddp_$m.json" --checkpoint_dir="$OUT/saved_$m" \
        --log_dir="$OUT/log_$m" > "$OUT/ddp_$m.txt" 2>&1
    python3 - "$OUT/ddp_$m.json" <<'PY' >> "$OUT/ddp_$m.txt" 2>&1
import json, sys
from mmrec_motor.quick_start import evaluator, load_run
result = json.load(open(sys.argv[1]))
run = load_run(result["combinations"][result["chosen"]]["checkpoint"])
test = evaluator(run.config, run.data, run.data.test).evaluate(run.model)
print("distributed", result["distributed"], "equal to one process:", test == result["best"]["test"])
PY
    tail -2 "$OUT/ddp_$m.txt"
  done
else
  echo "== 2: skipped (one GPU: an N-GPU torchrun needs two or more)"
fi
