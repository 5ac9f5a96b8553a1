#!/usr/bin/env bash
# SVG's key findings at CPU scale: SVG-LP, SVG-FP and the deterministic baseline trained on SM-MNIST
# with one configuration and one budget, evaluated best-of-100 on a fixed seeded test set.
#
#   experiments/smmnist_cpu/run.sh                 # about 45 min per model on a 2-core CPU, then eval
#   STEPS=2000 VIDEOS=64 OUT=/tmp/pilot RESULTS=/tmp/pilot/results experiments/smmnist_cpu/run.sh  # a quick look
#
# Rerunning resumes unfinished training runs (train.py) and redoes the evaluation. A larger STEPS
# extends finished runs; results/longer_32k came from SVG-LP and SVG-FP continued to 32,000 steps:
#
#   W=experiments/smmnist_cpu/work; mkdir -p ${W}_32k/runs
#   cp -r $W/runs/lp $W/runs/fp ${W}_32k/runs/; grep -E '^(lp|fp) ' $W/train_times.txt > ${W}_32k/train_times.txt
#   STEPS=32000 MODELS="lp fp" OUT=${W}_32k RESULTS=experiments/smmnist_cpu/results/longer_32k \
#     DISCUSSION=experiments/smmnist_cpu/discussion_32k.md \
#     TITLE="SVG-LP against SVG-FP on SM-MNIST, continued to 32,000 steps" experiments/smmnist_cpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-experiments/smmnist_cpu/work}      # run directories and raw evaluation (not committed)
RESULTS=${RESULTS:-experiments/smmnist_cpu/results}
STEPS=${STEPS:-16000}
VIDEOS=${VIDEOS:-500}
SAMPLES=${SAMPLES:-100}
MODELS=${MODELS:-"lp fp det"}
PY=${PY:-.venv/bin/python}
DISCUSSION=${DISCUSSION:-}   # appended to RESULTS.md; default: $RESULTS/../discussion.md if any
TITLE=${TITLE:-}             # RESULTS.md's heading; default: summarize.py's

# One configuration for the three models (RESULTS.md explains the choice): the reference's
# SM-MNIST setup (2 digits, 5 -> 10 frames, z 10, beta 1e-4, Adam 2e-3) with narrower networks,
# so that 16,000 steps of batch 16 fit in about 45 minutes on this CPU.
COMMON=(--dataset=smmnist --num_digits=2 --base_filters=16 --g_dim=64 --rnn_size=128 --z_dim=10
        --batch_size=16 --train_steps="$STEPS" --seed=1 --checkpoint_every=1000
        --image_every=2000 --log_every=250 --num_preview=4)

dirs=()
for model in $MODELS; do
  dirs+=(--model_dir="$OUT/runs/$model")
  last=$(tail -n 1 "$OUT/runs/$model/losses.jsonl" 2>/dev/null | sed -n 's/.*"step": \([0-9]*\).*/\1/p')
  if [ "${last:-0}" -ge "$STEPS" ]; then
    echo "== $model: already trained ($last steps) =="
    continue
  fi
  echo "== training $model ($STEPS steps) =="
  start=$(date +%s)
  "$PY" train.py "${COMMON[@]}" --model="$model" --model_dir="$OUT/runs/$model"
  echo "$model trained in $(( $(date +%s) - start )) s" | tee -a "$OUT/train_times.txt"  # summed over resumes
done

echo "== evaluating: $VIDEOS test videos (seed 42), $SAMPLES samples each, 5 -> 20 frames =="
"$PY" evaluate.py "${dirs[@]}" --num_samples="$SAMPLES" --max_videos="$VIDEOS" \
  --out="$OUT/eval" --num_figure_videos=4
"$PY" experiments/smmnist_cpu/summarize.py --eval_dir="$OUT/eval" --runs_dir="$OUT/runs" \
  --results_dir="$RESULTS" --train_times="$OUT/train_times.txt" \
  ${DISCUSSION:+--discussion="$DISCUSSION"} ${TITLE:+--title="$TITLE"}
echo "results in $RESULTS"
