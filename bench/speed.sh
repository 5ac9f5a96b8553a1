#!/usr/bin/env bash
# Every record of the README's Speed section, run back to back on an otherwise idle machine
# (about 50 minutes on 2 cores), then the roofline over them. The README's blocks are rendered
# from the records afterwards: python bench/report.py --write.
#
#   bash bench/speed.sh                 # svg_tf and the PyTorch yardstick
#   bash bench/speed.sh --before=REV    # also svg_tf at git revision REV (sample_before_*, ...)
#
# Nothing else should run meanwhile: the numbers are ratios of runs made minutes apart.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
before=""
for arg in "$@"; do
  case "$arg" in
    --before=*) before="${arg#--before=}" ;;
    *) echo "error: unknown argument $arg (usage: bash bench/speed.sh [--before=REV])" >&2; exit 1 ;;
  esac
done
step() { echo "speed | $(date +%H:%M:%S) | $*" >&2; }
yard() { step "yardstick $1"; $py bench/yardstick.py --out="$1" -- "${@:2}"; }
ours() { step "$1 $2"; $py "bench/$1.py" --out="$2" "${@:3}"; }

yard yardstick_train_smmnist_b16 --dataset smmnist --batch 16
ours train_step train_step_smmnist_b16_float32 --dataset=smmnist --batch_size=16
ours train_step train_step_smmnist_b16_mixed_bfloat16 --dataset=smmnist --batch_size=16 --precision=mixed_bfloat16
yard yardstick_train_bair_b8 --dataset bair --batch 8 --steps 4 --warmup 1
ours train_step train_step_bair_b8_float32 --dataset=bair --batch_size=8 --steps=4 --warmup=2
ours train_step train_step_bair_b8_mixed_bfloat16 --dataset=bair --batch_size=8 --steps=4 --warmup=2 --precision=mixed_bfloat16

yard yardstick_generate_smmnist_b16 --dataset smmnist --batch 16 --generate
yard yardstick_generate_smmnist_b16_encode_once --dataset smmnist --batch 16 --generate --encode_once
for p in float32 mixed_bfloat16; do
  ours sample "sample_smmnist_b16_$p" --dataset=smmnist --batch_size=16 --precision=$p
  ours sample "sample_smmnist_b16_${p}_batch_bn" --dataset=smmnist --batch_size=16 --precision=$p --generation_bn=batch
done
yard yardstick_generate_bair_b8 --dataset bair --batch 8 --generate --steps 5 --warmup 2
yard yardstick_generate_bair_b8_encode_once --dataset bair --batch 8 --generate --encode_once --steps 5 --warmup 2
for p in float32 mixed_bfloat16; do
  ours sample "sample_bair_b8_$p" --dataset=bair --batch_size=8 --precision=$p --steps=5
done
ours sample sample_bair_b8_float32_batch_bn --dataset=bair --batch_size=8 --steps=5 --generation_bn=batch

for p in float32 mixed_bfloat16; do  # evaluate.py's chunk of rows, and its whole loop
  ours sample "sample_smmnist_b256_$p" --dataset=smmnist --batch_size=256 --precision=$p --steps=3 --warmup=1
  ours sample "evaluate_smmnist_$p" --dataset=smmnist --evaluate --videos=4 --precision=$p
done

ours serve serve_smmnist --preset=smmnist --requests=5
ours serve serve_smmnist_mixed_bfloat16 --preset=smmnist --requests=5 --precision=mixed_bfloat16
ours serve serve_bair --preset=bair --requests=1 --warmup=0
ours serve serve_bair_mixed_bfloat16 --preset=bair --requests=1 --warmup=0 --precision=mixed_bfloat16

# Where each workload's time goes, and which part of the gap to its target is this CPU's
# (against the yardstick records above).
for p in float32 mixed_bfloat16; do
  ours attribution "attribution_train_smmnist_b16_$p" --work=train --dataset=smmnist --precision=$p
  ours attribution "attribution_train_bair_b8_$p" --work=train --dataset=bair --precision=$p --steps=2 --warmup=1
  ours attribution "attribution_sample_smmnist_b16_$p" --work=sample --dataset=smmnist --precision=$p
  ours attribution "attribution_sample_bair_b8_$p" --work=sample --dataset=bair --precision=$p --steps=3
done

if [ -n "$before" ]; then  # the same benches on the code of revision $before
  tree=$(mktemp -d)/before
  git worktree add -q --detach "$tree" "$before"
  trap 'git worktree remove --force "$tree"' EXIT
  results=$(pwd)/bench/results
  for p in float32 mixed_bfloat16; do
    step "before ($before) $p"
    $py "$tree/bench/sample.py" --dataset=smmnist --batch_size=16 --precision=$p --out="$results/sample_before_smmnist_b16_$p.json"
    $py "$tree/bench/sample.py" --dataset=bair --batch_size=8 --precision=$p --steps=5 --out="$results/sample_before_bair_b8_$p.json"
    $py "$tree/bench/train_step.py" --dataset=smmnist --batch_size=16 --precision=$p --out="$results/train_step_before_smmnist_b16_$p.json"
  done
  for f in "$results"/*_before_*.json; do  # an older record.py does not write the revision
    $py -c "import json, sys; d = json.load(open(sys.argv[1])); d['revision'] = sys.argv[2]
json.dump(d, open(sys.argv[1], 'w'), indent=2); open(sys.argv[1], 'a').write('\n')" "$f" "$(git rev-parse --short "$before")"
  done
fi

ours roofline roofline
step "done: python bench/report.py --write"
