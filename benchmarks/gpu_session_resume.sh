#!/usr/bin/env bash
# Second, shorter GPU call after benchmarks/gpu_session.sh: the CUDA test suite of the files that
# failed there (MMREC_MOTOR_TEST_GPU=1), and the unfinished cold-item / cold-start folders resumed.
#
#   DATA=/path/to/data PREV=/path/to/unpacked/lfm2k_runs OUT=/path/to/out bash benchmarks/gpu_session_resume.sh [SECONDS]
#
# PREV is the unpacked lfm2k_runs.tar.gz of the first call (its folders resume: finished runs are
# skipped). Results come back as OUT/lfm2k_runs2.tar.gz.
set -u
BUDGET=${1:-200}
START=$(date +%s)
DATA=${DATA:?set DATA}; PREV=${PREV:?set PREV}; OUT=${OUT:?set OUT}
export PYTHONUNBUFFERED=1
W=/tmp/gpu-work
mkdir -p "$W" "$OUT"
cp -r "$PREV"/c[is]-* "$W"/

(MMREC_MOTOR_TEST_GPU=1 timeout $((BUDGET - 20)) python3 -m pytest -q -n 4 -p no:cacheprovider \
   tests/test_backbone_dragon.py tests/test_backbone_slmrec.py tests/test_backbone_dualgnn.py \
   tests/test_backbone_lgmrec.py tests/test_backbone_grcn.py tests/test_backbone_bm3.py \
   tests/test_backbone_mmgcn.py tests/test_motor_runtime.py tests/test_end_to_end.py tests/test_checkpoints.py \
   > "$OUT/pytest_cuda2.txt" 2>&1; echo "pytest exit $?" >> "$OUT/pytest_cuda2.txt") &
PYTEST=$!

TASKS="$W/tasks2.txt"
common="-d lfm2k --data_path=$DATA --num_threads=1"
: > "$TASKS"
for seed in 999 1000 1001; do
  echo "mmrec-motor cold-items -m FREEDOM $common --seeds $seed --graph_cache_dir=$W/gc/ci-FREEDOM-$seed --motor_cache_dir=$W/mc/ci-FREEDOM-$seed --out $W/ci-FREEDOM-$seed" >> "$TASKS"
  echo "mmrec-motor cold-start -m FREEDOM $common --ratio 0.1 --seeds $seed --graph_cache_dir=$W/gc/cs-FREEDOM-$seed --motor_cache_dir=$W/mc/cs-FREEDOM-$seed --out $W/cs-FREEDOM-$seed" >> "$TASKS"
done
echo "mmrec-motor cold-items -m BM3 $common --seeds 1001 --graph_cache_dir=$W/gc/ci-BM3-1001 --motor_cache_dir=$W/mc/ci-BM3-1001 --out $W/ci-BM3-1001" >> "$TASKS"
for m in LGMRec; do
  echo "mmrec-motor cold-items -m $m $common --seeds 999 --graph_cache_dir=$W/gc/ci-$m-999 --motor_cache_dir=$W/mc/ci-$m-999 --out $W/ci-$m-999" >> "$TASKS"
  echo "mmrec-motor cold-start -m $m $common --ratio 0.1 --seeds 999 --graph_cache_dir=$W/gc/cs-$m-999 --motor_cache_dir=$W/mc/cs-$m-999 --out $W/cs-$m-999" >> "$TASKS"
done
LEFT=$(( BUDGET - ($(date +%s) - START) - 10 ))
python3 benchmarks/parallel.py "$TASKS" --jobs 9 --deadline "$LEFT" --logs "$W/tasklogs2" 2>&1 | tee "$OUT/parallel2.txt"
wait $PYTEST
tail -15 "$OUT/pytest_cuda2.txt"
tar -C "$W" -czf "$OUT/lfm2k_runs2.tar.gz" --exclude=saved --exclude=gc --exclude=mc c[is]-* tasklogs2
echo "total $(( $(date +%s) - START ))s"
