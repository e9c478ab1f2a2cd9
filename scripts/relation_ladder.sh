#!/usr/bin/env bash
# The relation ladder of the model card: fine-tune a model on VQA relation questions alone ("is
# the red circle left of the blue square?") with each CMAP variant, and evaluate each on the test
# split's relation questions. It measures whether the model can learn to compare two named objects
# at all, and which part of the prompt stops it.
#
#   scripts/relation_ladder.sh [MODEL [DATA [OUT]]]
#     MODEL  model directory to start from (default models/shapes-demo)
#     DATA   a Shapes run's data folder with train/, val/, test/ (default data/demo)
#     OUT    where the runs and ladder.json go (default runs/relation-ladder)
# EPOCHS (default 30), THREADS (default 1), ONLY (space-separated variant names; default all) and
# TRAIN_FROM (the folder whose relation questions train; default DATA/train) override.
# About 7 to 20 minutes a variant on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MODEL=${1:-models/shapes-demo}
DATA=${2:-data/demo}
OUT=${3:-runs/relation-ladder}
EPOCHS=${EPOCHS:-30}
THREADS=${THREADS:-1}
mkdir -p "$OUT"
# relation questions only, beside the same images
TRAIN_FROM=${TRAIN_FROM:-$DATA/train}  # another training split, e.g. a bigger one (the card's figures)
for split in train val test; do
  from=$DATA/$split
  [[ $split == train ]] && from=$TRAIN_FROM
  mkdir -p "$OUT/data/$split"
  ln -sfn "$(realpath "$from/images")" "$OUT/data/$split/images"
  grep '"kind": "relation"' "$from/vqa.jsonl" > "$OUT/data/$split/vqa.jsonl"
done
# variant name, then its fine-tuning options
VARIANTS=("swap|--cmap-mode swap" "mix|--cmap-mode mix" "off|--cmap-mode off"
  "swap+slot-geometry|--cmap-mode swap --slot-geometry" "mix+slot-geometry|--cmap-mode mix --slot-geometry"
  "off+anchor-markers|--cmap-mode off --anchor-markers")
echo "{" > "$OUT/ladder.json.tmp"
first=1
for v in "${VARIANTS[@]}"; do
  name=${v%%|*}; opts=${v#*|}
  [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]] || continue
  echo "== $name"
  # shellcheck disable=SC2086
  $BIN/cmal train finetune --init "$MODEL" --tasks vqa --train "$OUT/data/train" --val "$OUT/data/val" \
    --out "$OUT/$name" --epochs "$EPOCHS" --threads "$THREADS" --seed 0 --quiet $opts
  $BIN/cmal evaluate --model "$OUT/$name" --data "$OUT/data/test" --task vqa --output "$OUT/$name.json" --quiet
  [[ $first == 1 ]] || echo "," >> "$OUT/ladder.json.tmp"
  first=0
  printf '"%s": %s' "$name" "$($BIN/python -c "import json,sys; print(json.load(open(sys.argv[1]))['vqa']['accuracy'])" "$OUT/$name.json")" >> "$OUT/ladder.json.tmp"
done
echo "}" >> "$OUT/ladder.json.tmp"
mv "$OUT/ladder.json.tmp" "$OUT/ladder.json"
cat "$OUT/ladder.json"
