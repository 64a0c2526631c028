#!/usr/bin/env bash
# The GPU checks of issues 4 and 5 as one prepared script, for a one-GPU machine with many cores.
#
#   DATA=/path/to/data OUT=/path/to/out bash benchmarks/gpu_session.sh [SECONDS]
#
# DATA holds baby/baby.inter and lfm2k/ (the folders of ../shared/data); results go to OUT. Stages:
#   B. Baby-sized speed on the GPU (alone on the machine): FREEDOM, BM3, LGMRec, ID and MOTOR.
#   A. The whole test suite with CUDA as the device (use_gpu defaults to True), 4 pytest workers.
#   C. lfm2k accuracy runs on the GPU, one command per (analysis or bench, model, seed), 12 at a time,
#      until SECONDS (default 530) after the start: cold items and cold start for FREEDOM, BM3 and
#      LGMRec, the token-budget sweep for FREEDOM, then the 5-seed bench of every backbone. Each
#      command writes its own folder, so nothing races; the folders are merged and their reports
#      rebuilt afterwards (docs/benchmarks.md says how).
# Everything under OUT/work except checkpoints and caches comes back as OUT/lfm2k_runs.tar.gz.
set -u
BUDGET=${1:-530}
START=$(date +%s)
DATA=${DATA:?set DATA to the data folder}
OUT=${OUT:?set OUT to the output folder}
export PYTHONUNBUFFERED=1
W=/tmp/gpu-work
mkdir -p "$W" "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/machine.txt" 2>&1
python3 -c "import torch, numpy, faiss; print('torch', torch.__version__, 'numpy', numpy.__version__,
'faiss', faiss.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))" >> "$OUT/machine.txt" 2>&1
nproc >> "$OUT/machine.txt"
cat "$OUT/machine.txt"

echo "== B: Baby-sized speed on the GPU"
timeout 170 python3 benchmarks/speed.py --models FREEDOM,BM3,LGMRec --variants id,motor --dataset baby \
    --data_path "$DATA" --epochs 4 --num_threads 4 --scratch "$W/speed" 2>&1 | tee "$OUT/gpu_speed.txt"

echo "== A: test suite on CUDA (background)"
(timeout 240 python3 -m pytest -q -n 4 -p no:cacheprovider tests > "$OUT/pytest_cuda.txt" 2>&1;
 echo "pytest exit $?" >> "$OUT/pytest_cuda.txt") &
PYTEST=$!

echo "== C: lfm2k runs"
TASKS="$W/tasks.txt"
: > "$TASKS"
common="-d lfm2k --data_path=$DATA --num_threads=1"
for seed in 999 1000 1001; do
  for m in FREEDOM BM3 LGMRec; do
    echo "mmrec-motor cold-items -m $m $common --seeds $seed --graph_cache_dir=$W/gc/ci-$m-$seed --motor_cache_dir=$W/mc/ci-$m-$seed --out $W/ci-$m-$seed" >> "$TASKS"
    echo "mmrec-motor cold-start -m $m $common --ratio 0.1 --seeds $seed --graph_cache_dir=$W/gc/cs-$m-$seed --motor_cache_dir=$W/mc/cs-$m-$seed --out $W/cs-$m-$seed" >> "$TASKS"
  done
done
echo "mmrec-motor token-budget -m FREEDOM $common --subspaces 8 --nbits 4,6,8 --seeds 999 --id-baseline --graph_cache_dir=$W/gc/tb8 --motor_cache_dir=$W/mc/tb8 --out $W/tb-8" >> "$TASKS"
for sub in 2 4 16; do
  echo "mmrec-motor token-budget -m FREEDOM $common --subspaces $sub --nbits 4,6,8 --seeds 999 --graph_cache_dir=$W/gc/tb$sub --motor_cache_dir=$W/mc/tb$sub --out $W/tb-$sub" >> "$TASKS"
done
for seed in 999 1000 1001 1002 1003; do
  for m in FREEDOM VBPR LightGCN LATTICE BM3 LGMRec SLMRec MGCN MMGCN GRCN; do
    echo "mmrec-motor bench -m $m $common --seeds $seed --graph_cache_dir=$W/gc/b-$m-$seed --motor_cache_dir=$W/mc/b-$m-$seed --out $W/bench-$m-$seed" >> "$TASKS"
  done
  echo "mmrec-motor bench -m BPR $common --reg_weight=1.0 --seeds $seed --motor_cache_dir=$W/mc/b-BPR-$seed --out $W/bench-BPR-$seed" >> "$TASKS"
  for m in DualGNN DRAGON; do
    echo "mmrec-motor bench -m $m $common --variants id --seeds $seed --graph_cache_dir=$W/gc/b-$m-$seed --out $W/bench-$m-$seed" >> "$TASKS"
  done
done
LEFT=$(( BUDGET - ($(date +%s) - START) - 15 ))
python3 benchmarks/parallel.py "$TASKS" --jobs 12 --deadline "$LEFT" --logs "$W/tasklogs" 2>&1 | tee "$OUT/parallel.txt"

wait $PYTEST
tail -5 "$OUT/pytest_cuda.txt"
tar -C "$W" -czf "$OUT/lfm2k_runs.tar.gz" --exclude=saved --exclude=gc --exclude=mc --exclude=speed .
ls -la "$OUT"
echo "total $(( $(date +%s) - START ))s"
