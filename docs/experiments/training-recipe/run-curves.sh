#!/usr/bin/env bash
# Rounds 2 and 3 of the training-recipe evidence: whole dev-en loss curves without early stopping (patience equal to
# the epoch cap) for the two configurations the committed study showed stuck (single on the last layer, aif fusing the
# embedding output with the last), seeds 0-2, at a constant learning rate of 3e-3 and 1e-3, at 1e-3 and 3e-4 with
# train-en standardisation to unit variance (std-*; round 3 adds 3e-4 and single on layer 7), and (round 3) with
# every channel scaled to the median channel std of the head's layers at 1e-3 (aif only) and 5e-4, the chosen
# default, and raw features at 5e-4 for aif; then the table of what early stopping with each patience would select (CURVES.md, curves.png).
# Run from the repository root after the extraction:
#   bash docs/experiments/training-recipe/run-curves.sh
# The specs spell out the whole recipe (the defaults of xfuse train-heads have changed since); a folder already
# planned is resumed (only missing runs are trained): delete it to recompute from its spec.
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
sweeps=()
for name in lr3e-3 lr1e-3 lr5e-4 std-lr1e-3 std-lr3e-4 median-lr1e-3 median-lr5e-4; do
  [ -f $here/curves-$name/plan.json ] || xfuse sweep plan --spec $here/spec-curves-$name.json --out $here/curves-$name --store "$store"
  xfuse sweep submit --plan $here/curves-$name/plan.json --executor local --workers 2 --quiet
  sweeps+=("$here/curves-$name")
done
python $here/curves.py "${sweeps[@]}" > $here/CURVES.md
