#!/usr/bin/env bash
# Rebuild models/shapes-demo with fixed seeds: data, detector, CMAL pre-training, multi-task
# fine-tuning, evaluation, model card. Prints each stage's wall time.
# Seeds: train 1000, val 1001, fresh training images FRESH_STAGES (training); test 3000, compositional
# 3001 (evaluation only).
#
#   scripts/demo_model.sh            the model (make demo-model)
#   scripts/demo_model.sh ablation   AMC pre-training (the main run's) vs contrastive CMCL
#                                    pre-training (same data and epochs) vs none, each fine-tuned
#                                    alike on ABL_SHARES of the training images, evaluated, tabled
#                                    and plotted (cmal.ablation), and the card rebuilt with it (make
#                                    demo-ablation). It needs the main run's detector and
#                                    pre-training; finished runs are kept, so it can be resumed.
# A rerun of the main run resumes after its last finished stage: each stage leaves its wall time in
# $RUNS/stage-seconds/<stage> when it succeeds, and the card's total is their sum. Once one stage
# runs, every later one runs too (deleting a stage's file redoes it and what follows). From scratch:
# delete $RUNS first, as after changing a stage's options.
# THREADS=N sets torch threads per CMAL training process (default: torch's); with two runs side by
# side on two cores, THREADS=1 each is fastest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DATA:-data/demo}
RUNS=${RUNS:-runs/demo}
OUT=${OUT:-models/shapes-demo}
PRE_EPOCHS=${PRE_EPOCHS:-8}
DET_EPOCHS=${DET_EPOCHS:-6}
FT_EPOCHS=${FT_EPOCHS:-12}  # the swap stage: without dropout it levels off by epoch 12 (16 with dropout 0.1)
COMPARE_EPOCHS=${COMPARE_EPOCHS:-5}  # the second fine-tuning stage, CMAP off (0: skip it)
# then one more stage per SEED:STATEMENTS:EPOCHS, each on 4,000 training images of its own seed with
# those extra statements (`cmal data shapes --extra-statements`), CMAP off with markers, VE hypotheses
# as ITM examples, at FRESH_LR: fresh images did more than more epochs on the same ones (the card,
# steps 6-9). Without dropout three stages meet every bar on five test splits; with dropout 0.1 the
# recipe needed five (the card, "Rebuild 7"). Empty: none.
FRESH_STAGES=${FRESH_STAGES-1002:listing=4,count=2:2 1003:listing=8,count=2:2 1004:listing=8,count=2:2}
FRESH_LR=${FRESH_LR:-2e-4}
# fresh_spec SPEC: split one FRESH_STAGES entry into $seed, $statements and $epochs (the caller's locals)
fresh_spec() { IFS=: read -r seed statements epochs <<< "$1"; }
# detector options: colour read by a shape-blind path, shape by a grey backbone (README, "The region
# detector": held-out colour-shape pairs 0.996 tags / 1.000 attributes, against 0.906 / 0.869)
DET_ARGS=${DET_ARGS---colour-channels 16 --grey-backbone}  # set but empty: the joint detector
LAYERS=${LAYERS:-3}  # unified encoder depth (demo preset: 2; the card says why 3)
THREADS=${THREADS:-0}
# CMAP during the first fine-tuning stage (swap, mix or off) and extra pre-training options. The
# committed model's base: swap, none. The card's relation ladder has the figures of the alternatives.
FT_CMAP=${FT_CMAP:-swap}
PRETRAIN_ARGS=${PRETRAIN_ARGS:-}
# two-object relations (the card's relation ladder, rung 5): the training split gets this many more
# relation questions and statements per image, and the CMAP-off stage ties each anchored word to its
# region with a learned marker; relation-only fine-tuning with both reached 0.96, either alone 0.85-0.89
EXTRA_RELATIONS=${EXTRA_RELATIONS:-2}
# the first fine-tuning stage's split: the same images and records with this many extra relation
# texts. A swap overwrites both named objects' slots, so it cannot learn relations, and their texts
# slowed it: 8 swap epochs reached validation VQA 0.66 after 6 without them, 0.60 after 7 with
# them (the card, "What makes the swap stage slow")
FIRST_EXTRA_RELATIONS=${FIRST_EXTRA_RELATIONS:-0}
MARKERS=${MARKERS---anchor-markers}  # MARKERS= (empty): no markers
# from the CMAP-off stage on, a noun whose phrase names a colour or size anchors only to regions that
# have it, so a listing item with a changed colour or size loses its anchor as one with a changed
# shape does (the card, "Which items of a listing a model checks"). Empty: the lenient anchors.
STRICT_ANCHORS=${STRICT_ANCHORS---strict-attribute-anchors}
# fine-tuning batches run as up to this many sub-batches of similar text length: the same losses,
# 1.3x the steps per second here (scripts/finetune_speed.py; 2 beat 4, whose extra calls cost more)
LENGTH_GROUPS=${LENGTH_GROUPS:-2}
# fine-tuning's dropout (`cmal train finetune --dropout`, from the first stage; later stages keep
# their start's). Set but empty: the pre-trained model's, 0.1. Without dropout the swap stage
# converges in 12 epochs instead of 16 and each step runs faster (the card, "Fitting the recipe in 90
# minutes"). The ablation's runs take ABL_DROPOUT instead (empty: 0.1, as its committed figures were measured)
FT_DROPOUT=${FT_DROPOUT-0}
ABL_DROPOUT=${ABL_DROPOUT:-}
TASK_ARGS=(--tasks ve,rec,vqa,itm --val "$DATA/val" --seed 0 --threads "$THREADS"
  --length-groups "$LENGTH_GROUPS" --quiet)
FIRST_TRAIN=$DATA/train  # the first stage's training split (make_data writes train-first when it differs)
(( FIRST_EXTRA_RELATIONS != EXTRA_RELATIONS )) && FIRST_TRAIN=$DATA/train-first
PRE_ARGS=(--data "$DATA/train" --val "$DATA/val" --detector "$RUNS/detector" --epochs "$PRE_EPOCHS" --seed 0
  --threads "$THREADS" --geometry-mlm 0.5 --layers "$LAYERS" --quiet $PRETRAIN_ARGS)
# The ablation's fine-tuning budget (both stages, per run) is smaller than the main run's: six runs.
ABL_SHARES=${ABL_SHARES:-0.1 1}
# the starting points this run fine-tunes (a subset lets several ablation runs share the machine, one
# thread each: ABL_ARMS=amc THREADS=1 ... & ABL_ARMS=cmcl THREADS=1 ...); the table covers every arm measured
ABL_ARMS=${ABL_ARMS:-amc cmcl none}
ABL_EPOCHS=${ABL_EPOCHS:-4}
ABL_COMPARE_EPOCHS=${ABL_COMPARE_EPOCHS:-2}
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s so far)"; }
# run_stage NAME COMMAND...: run a main-run stage unless an earlier run finished it (and no earlier
# stage ran in this one), and record its time
SECONDS_DIR="$RUNS/stage-seconds"
STAGES=(data detector pre-training fine-tuning evaluation)
ran=0
run_stage() {
  local name=$1 began
  shift
  if (( ! ran )) && [[ -f "$SECONDS_DIR/$name" ]]; then
    echo "== $name: finished by an earlier run ($(cat "$SECONDS_DIR/$name") s), kept"
    return 0
  fi
  ran=1
  stage "$name"
  began=$(date +%s)
  "$@"
  mkdir -p "$SECONDS_DIR"
  echo "$(( $(date +%s) - began ))" > "$SECONDS_DIR/$name"
}
NOTES=docs/demo-model/notes.md  # the card's hand-written part: how the model was built, what it cannot do
card() { $BIN/python -m cmal.card_build --run "$RUNS" --data "$DATA" --out "$OUT" --seconds "$(cat "$RUNS/seconds")" \
  --notes "$NOTES" --stages "${STAGES[*]}"; }

# finetune INIT OUT FIRST SECOND [OPTION...]: the two fine-tuning stages, FIRST epochs with CMAP
# $FT_CMAP on $FIRST_TRAIN, then SECOND epochs on $DATA/train with CMAP off and $MARKERS, so every
# region keeps its own slot, box included, and a question about two named objects can compare them
# (relation ladder, rungs 4-5). OUT serves with CMAP off (SECOND 0: one stage, OUT keeps $FT_CMAP);
# when val has expressions that name nothing, grounding's decline threshold is chosen there.
finetune() {
  local init=$1 out=$2 first=$3 second=$4
  shift 4
  local first_out=$out
  (( second > 0 )) && first_out=$out-first
  $BIN/cmal train finetune --init "$init" "${TASK_ARGS[@]}" --train "$FIRST_TRAIN" --epochs "$first" \
    --cmap-mode "$FT_CMAP" --out "$first_out" "$@"
  (( second > 0 )) || return 0
  stage "fine-tuning, CMAP off"
  # shellcheck disable=SC2086
  $BIN/cmal train finetune --init "$first_out" "${TASK_ARGS[@]}" --train "$DATA/train" --epochs "$second" \
    --cmap-mode off $MARKERS $OFF_ARGS --out "$out" "$@"
}
OFF_ARGS=""  # more options of the CMAP-off stage (the main run's: below)
# train_split OUT SEED [OPTION...]: 4,000 training images of SEED (the generator's train split: no
# held-out colour-shape pair), with OPTIONs such as --extra-relations
train_split() {
  local out=$1 seed=$2
  shift 2
  $BIN/cmal data shapes --out "$out" --seed "$seed" --num-images 4000 --split train --quiet "$@"
}
# first_split: the first stage's training split, unless it is the training split itself
first_split() {
  [[ $FIRST_TRAIN == "$DATA/train" ]] && return 0
  train_split "$FIRST_TRAIN" 1000 --extra-relations "$FIRST_EXTRA_RELATIONS"
}

if [[ "${1:-}" == "ablation" ]]; then
  [[ -f "$RUNS/detector/detector.safetensors" && -f "$RUNS/pretrain/cmal.safetensors" ]] ||
    { echo "no detector or pre-training in $RUNS: run scripts/demo_model.sh (make demo-model) first" >&2; exit 2; }
  # a main run from before the first stage had a split of its own
  [[ -f "$FIRST_TRAIN/dataset.json" ]] || first_split
  if [[ ! -f "$RUNS/pretrain-cmcl/cmal.safetensors" ]]; then
    stage "contrastive (CMCL) pre-training"
    $BIN/cmal train pretrain "${PRE_ARGS[@]}" --objective cmcl --out "$RUNS/pretrain-cmcl"
  fi
  declare -A INIT=([amc]="$RUNS/pretrain" [cmcl]="$RUNS/pretrain-cmcl" [none]="$RUNS/detector")
  for share in $ABL_SHARES; do
    for arm in $ABL_ARMS; do
      [[ -n "${INIT[$arm]:-}" ]] || { echo "unknown ablation arm $arm (amc, cmcl or none)" >&2; exit 2; }
      dir="$RUNS/ablation/$arm-$share"
      [[ -f "$dir/compositional.json" ]] && continue  # measured by an earlier run
      stage "ablation: $arm, $share of the training images"
      extra=(--data-share "$share")
      [[ $arm == none ]] && extra+=(--layers "$LAYERS")
      [[ -n $ABL_DROPOUT ]] && extra+=(--dropout "$ABL_DROPOUT")
      finetune "${INIT[$arm]}" "$dir/model" "$ABL_EPOCHS" "$ABL_COMPARE_EPOCHS" "${extra[@]}"
      for split in test compositional; do
        $BIN/cmal evaluate --model "$dir/model" --data "$DATA/$split" --task all --output "$dir/$split.json" --quiet
      done
    done
  done
  $BIN/python -m cmal.ablation --run "$RUNS"
  if [[ -f "$RUNS/seconds" ]]; then card; else echo "the main run will write the card with this ablation"; fi
  stage "done"
  exit 0
fi

# spawn COMMAND...: run COMMAND in the background, at most one per core at a time; a failed one stops
# the script (the generator is single-threaded and each split depends only on its seed, so the splits
# come out byte for byte the same in any order; the data stage took 133 s instead of 224 s here)
spawn() {
  while (( $(jobs -rp | wc -l) >= $(nproc) )); do wait -n; done
  "$@" &
}
# wait_all: wait for every spawned command; the first that failed stops the script
wait_all() {
  local pid
  for pid in $(jobs -p); do wait "$pid"; done
}
make_data() {
  spawn train_split "$DATA/train" 1000 --extra-relations "$EXTRA_RELATIONS"
  spawn first_split
  spawn $BIN/cmal data shapes --out "$DATA/val" --seed 1001 --num-images 400 --split val --quiet
  spawn $BIN/cmal data shapes --out "$DATA/test" --seed 3000 --num-images 1000 --split test --quiet
  spawn $BIN/cmal data shapes --out "$DATA/compositional" --seed 3001 --num-images 500 --split compositional --quiet
  local spec seed statements epochs
  for spec in $FRESH_STAGES; do
    fresh_spec "$spec"
    spawn train_split "$DATA/train-$seed" "$seed" --extra-relations "$EXTRA_RELATIONS" \
      --extra-statements "$statements"
  done
  wait_all
}
train_detector() {  # all cores: nothing else can run before the detector exists
  $BIN/cmal train detector --data "$DATA/train" --val "$DATA/val" --out "$RUNS/detector" --seed 0 \
    --epochs "$DET_EPOCHS" --quiet $DET_ARGS
}
evaluate() {
  $BIN/cmal evaluate --model "$RUNS/final" --data "$DATA/test" --task all --output "$RUNS/test.json" --quiet
  $BIN/cmal evaluate --model "$RUNS/final" --data "$DATA/compositional" --task all \
    --output "$RUNS/compositional.json" --quiet
  $BIN/python scripts/errors_by_kind.py "$RUNS/final" "$DATA/test" --relation-anchors --listing-changes \
    --output "$RUNS/kinds.json"
}

# the machine this run ran on (CPU, torch's matrix-product rate on THREADS threads), for the card:
# the project's machines differ in speed, so a run time means little without it
mkdir -p "$RUNS"
$BIN/python -m cmal.bench.machine --threads "$THREADS" --out "$RUNS/machine.json"
run_stage data make_data
run_stage detector train_detector
run_stage pre-training $BIN/cmal train pretrain "${PRE_ARGS[@]}" --out "$RUNS/pretrain"
# VE hypotheses as ITM examples from the CMAP-off stage on (the card, step 4; the ablation runs without)
OFF_ARGS="--ve-trains-itm $STRICT_ANCHORS"
# fine_tune: the two stages, then one per FRESH_STAGES, the last one writing $RUNS/final
fine_tune() {
  local prev=$RUNS/final seed statements epochs out
  [[ -n "$FRESH_STAGES" ]] && prev=$RUNS/two-stage
  finetune "$RUNS/pretrain" "$prev" "$FT_EPOCHS" "$COMPARE_EPOCHS" ${FT_DROPOUT:+--dropout "$FT_DROPOUT"}
  set -- $FRESH_STAGES
  while (( $# )); do
    fresh_spec "$1"
    shift
    out=$RUNS/fresh-$seed
    (( $# )) || out=$RUNS/final
    stage "fine-tuning on fresh images (seed $seed)"
    # shellcheck disable=SC2086
    $BIN/cmal train finetune --init "$prev" --tasks ve,rec,vqa,itm --train "$DATA/train-$seed" \
      --val "$DATA/val" --epochs "$epochs" --lr "$FRESH_LR" --seed "$seed" --threads "$THREADS" \
      --length-groups "$LENGTH_GROUPS" --cmap-mode off $MARKERS $OFF_ARGS --out "$out" --quiet
    prev=$out
  done
}
run_stage fine-tuning fine_tune
run_stage evaluation evaluate

stage "model directory"
# every stage's time, whichever run did it
(cd "$SECONDS_DIR" && awk '{ s += $1 } END { print s }' "${STAGES[@]}") > "$RUNS/seconds"
card
stage "done"
