#!/usr/bin/env bash
# Round 4 of the training-recipe evidence: the configurations whose seeds split between the prior and a clear
# improvement under the first version of the recipe (CONVERGENCE.md: mean on layers 0+12 and 7+12, aif on 0+12).
#  - whole curves (patience equal to the cap) of mean on 0+12 and 7+12, seeds 0-2, under the other recipes tried
#    for aif in rounds 2-3: raw features at 1e-3, unit z-scores at 3e-4, median scaling at 1e-3 (aif's curves exist);
#  - median scaling at 2.5e-4 for single on the last layer, aif and mean on 0+12, seeds 0-2 (whole curves of 40);
#  - seeds 3-7 of the three configurations as whole curves of 60 epochs under the default's scaling and rate
#    (seeds/), and of aif and mean on 0+12 under unit z-scores at 3e-4 (the one recipe where every seed of aif
#    on 0+12 learned), to size how often a seed stays at the prior and whether runs leave it after epoch 20.
# Run from the repository root after the extraction; resumes (only missing runs are trained):
#   bash docs/experiments/training-recipe/run-mixed.sh
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
for name in curves-mixed-lr1e-3 curves-mixed-std-lr3e-4 curves-mixed-median-lr1e-3 seeds curves-std-lr3e-4-seeds \
    curves-mixed-median-lr2.5e-4; do
  [ -f $here/$name/plan.json ] || xfuse sweep plan --spec $here/spec-$name.json --out $here/$name --store "$store"
  xfuse sweep submit --plan $here/$name/plan.json --executor local --workers 2 --quiet
done
python $here/mixed.py $here > $here/MIXED.md
python $here/rules.py $here > $here/RULES.md
