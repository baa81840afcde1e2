#!/usr/bin/env bash
# Second round of the training-recipe evidence: whole dev-en loss curves without early stopping (patience equal to
# the epoch cap) for the two configurations the committed study showed stuck (single on the last layer, aif fusing the
# embedding output with the last), seeds 0-2, at a constant learning rate of 3e-3 and 1e-3, and at 1e-3 with train-en
# standardisation; then the table of what early stopping with each patience would select (CURVES.md, curves.png).
# Run from the repository root after the extraction:
#   bash docs/experiments/training-recipe/run-curves.sh
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
sweeps=()
for name in lr3e-3 lr1e-3 std-lr1e-3; do
  xfuse sweep plan --spec $here/spec-curves-$name.json --out $here/curves-$name --store "$store"
  xfuse sweep submit --plan $here/curves-$name/plan.json --executor local --workers 2 --quiet
  sweeps+=("$here/curves-$name")
done
python $here/curves.py "${sweeps[@]}" > $here/CURVES.md
