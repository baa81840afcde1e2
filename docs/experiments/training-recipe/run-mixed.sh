#!/usr/bin/env bash
# Round 4 of the training-recipe evidence: the configurations whose seeds split between the prior and a clear
# improvement under the default recipe (CONVERGENCE.md: mean on layers 0+12 and 7+12, aif on 0+12).
#  - whole curves (patience equal to the cap) of mean on 0+12 and 7+12, seeds 0-2, under the other recipes tried
#    for aif in rounds 2-3: raw features at 1e-3, unit z-scores at 3e-4, median scaling at 1e-3 (aif's curves exist);
#  - seeds 3-7 of the three configurations under the recipe of CONVERGENCE-M20.md (patience counted from epoch 20),
#    to size how often a seed stays at the prior.
# Run from the repository root after the extraction; resumes (only missing runs are trained):
#   bash docs/experiments/training-recipe/run-mixed.sh
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
for name in mixed-lr1e-3 mixed-std-lr3e-4 mixed-median-lr1e-3; do
  [ -f $here/curves-$name/plan.json ] || xfuse sweep plan --spec $here/spec-curves-$name.json --out $here/curves-$name --store "$store"
  xfuse sweep submit --plan $here/curves-$name/plan.json --executor local --workers 2 --quiet
done
[ -f $here/seeds/plan.json ] || xfuse sweep plan --spec $here/spec-seeds.json --out $here/seeds --store "$store"
xfuse sweep submit --plan $here/seeds/plan.json --executor local --workers 2 --quiet
