#!/usr/bin/env bash
# The convergence table of the trustworthy-training issue (CONVERGENCE.md): the default recipe of xfuse train-heads
# on single (layers 0, 7, 12), dlfa/aif/concat/mean (lower layer 0 and 7 with the last) and scalar_mix (all), seeds
# 0-2, each beside the same seed trained three times as many epochs without early stopping. Both steps resume where
# they were stopped. Run from the repository root after the extraction (`xfuse extract --split all`):
#   bash docs/experiments/training-recipe/run-convergence.sh
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
if [ ! -f $here/convergence/default/plan.json ]; then
  xfuse sweep plan --spec $here/spec-convergence.json --out $here/convergence/default --store "$store"
fi
xfuse sweep submit --plan $here/convergence/default/plan.json --executor local --workers 2 --quiet
python $here/convergence.py references $here/convergence
python $here/convergence.py table $here/convergence > $here/CONVERGENCE.md
