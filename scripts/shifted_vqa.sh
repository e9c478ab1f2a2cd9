#!/usr/bin/env bash
# Bring your own images, measured (README, "Bring your own images"): the bundled model fine-tuned
# for VQA on the shifted domain, whose shapes and colours its detector never saw, from VQA pairs
# alone (no boxes), with 100% and with 10% of the training questions, each with the detector
# frozen (today's fine-tuning) and adapted end to end (--adapt-detector); every run evaluated on
# the shifted test split's questions alone. Data: seed 100 (train 2,000 images, val 250, test 500).
#
#   scripts/shifted_vqa.sh                       all four runs, one after the other
#   scripts/shifted_vqa.sh adapt-10 frozen-10    only these
#   scripts/shifted_vqa.sh boxes-100             the route with boxes: the detector first fine-tuned
#                                                on the training split's objects.jsonl (new classes
#                                                added, DET_EPOCHS epochs), then the same VQA run
#   scripts/shifted_vqa.sh found-100 found-adapt-10
#                                                the route without boxes: the detector's proposals
#                                                first trained on boxes found in the pixels of the
#                                                run's own training images (--boxes-from foreground,
#                                                DET_EPOCHS epochs; with the classes found among them
#                                                and named from the questions, unless DETECTOR_ARGS
#                                                has --no-found-classes), then the VQA run, frozen or
#                                                (found-adapt-*) adapted end to end
# THREADS (default 1), EPOCHS_100 (default 12), EPOCHS_10 (default 60), DET_EPOCHS (default 6) and
# DET_LR_SCALE (default 1: the adapted detector's learning rate, x --lr) override the defaults;
# FINETUNE_ARGS and DETECTOR_ARGS add options to every `cmal train finetune` and `cmal train
# detector` (e.g. "--dropout 0.1", "--image-size 160"); CMAL (default .venv/bin/cmal) is the
# command to run.
set -euo pipefail
cd "$(dirname "$0")/.."
CMAL=${CMAL:-.venv/bin/cmal}
DATA=${DATA:-data/shifted}
RUNS=${RUNS:-runs/shifted-vqa}
THREADS=${THREADS:-1}
EPOCHS_100=${EPOCHS_100:-12}
EPOCHS_10=${EPOCHS_10:-60}
DET_EPOCHS=${DET_EPOCHS:-6}
DET_LR_SCALE=${DET_LR_SCALE:-1}
read -r -a FINETUNE_EXTRA <<< "${FINETUNE_ARGS:-}"
read -r -a DETECTOR_EXTRA <<< "${DETECTOR_ARGS:-}"
WANTED=("${@:-frozen-100}")
[[ $# -gt 0 ]] || WANTED=(frozen-100 frozen-10 adapt-100 adapt-10)

# the splits, then VQA-only folders (vqa.jsonl and the images: no objects.jsonl, no boxes);
# train10-vqa keeps every tenth training question
for split in "train 2000" "val 250" "test 500"; do
  set -- $split
  [[ -f "$DATA/$1/dataset.json" ]] ||
    $CMAL data shapes --domain shifted --out "$DATA/$1" --split "$1" --num-images "$2" --seed 100 --quiet
  mkdir -p "$DATA/$1-vqa"
  ln -sfn "../$1/images" "$DATA/$1-vqa/images"
  cp "$DATA/$1/vqa.jsonl" "$DATA/$1-vqa/vqa.jsonl"
done
mkdir -p "$DATA/train10-vqa"
ln -sfn ../train/images "$DATA/train10-vqa/images"
awk 'NR % 10 == 1' "$DATA/train/vqa.jsonl" > "$DATA/train10-vqa/vqa.jsonl"

run() {  # NAME: [found-]frozen-100, ... adapt-10, boxes-100, boxes-10, found-100, found-adapt-10, ...
  local name=$1 train=train-vqa epochs=$EPOCHS_100 adapt=() init=models/shapes-demo share=100
  [[ $name == *-10 ]] && train=train10-vqa epochs=$EPOCHS_10 share=10
  [[ $name == adapt-* || $name == *-adapt-* ]] && adapt=(--adapt-detector --detector-lr-scale "$DET_LR_SCALE")
  if [[ $name == boxes-* ]]; then
    init=$RUNS/boxes-detector
    [[ -f "$init/detector.safetensors" ]] || $CMAL train detector --init models/shapes-demo --data "$DATA/train" \
      --val "$DATA/val" --out "$init" --epochs "$DET_EPOCHS" --threads "$THREADS" ${DETECTOR_EXTRA[@]+"${DETECTOR_EXTRA[@]}"} --quiet
  fi
  if [[ $name == found-* ]]; then  # no boxes: proposals learn from boxes found in the run's own images
    init=$RUNS/found-detector-$share
    [[ -f "$init/detector.safetensors" ]] || $CMAL train detector --init models/shapes-demo \
      --data "$DATA/$train" --val "$DATA/val-vqa" --boxes-from foreground --out "$init" \
      --epochs "$DET_EPOCHS" --threads "$THREADS" ${DETECTOR_EXTRA[@]+"${DETECTOR_EXTRA[@]}"} --quiet
  fi
  echo "== $name: $epochs epochs on $DATA/$train ${adapt[*]}"
  $CMAL train finetune --init "$init" --tasks vqa --train "$DATA/$train" --val "$DATA/val-vqa" \
    --out "$RUNS/$name" --epochs "$epochs" --threads "$THREADS" --seed 0 "${adapt[@]}" ${FINETUNE_EXTRA[@]+"${FINETUNE_EXTRA[@]}"} --quiet
  $CMAL evaluate --model "$RUNS/$name" --data "$DATA/test-vqa" --task vqa --output "$RUNS/$name/test.json" --quiet
}
for name in "${WANTED[@]}"; do run "$name"; done
