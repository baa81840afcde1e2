#!/usr/bin/env bash
# scalar_mix's layer weights at a multiple of the learning rate (--mix-lr-factor): whole dev-en curves without early
# stopping (patience equal to the cap), the default recipe otherwise, train-en held in memory (--memory-mb 8192: the
# same batches as streaming, half the epoch time), one thread. Run from the repository root after the extraction:
#   bash docs/experiments/training-recipe/run-mix-lr.sh FACTOR SEED [EPOCHS]     # about 12 minutes for 60 epochs
# into mix-lr/f<FACTOR>/results/; a run already there is skipped. `python mix.py .` tabulates them (MIX-LR.md).
set -euo pipefail
here=docs/experiments/training-recipe
factor=${1:?usage: run-mix-lr.sh FACTOR SEED [EPOCHS]}; seed=${2:?usage: run-mix-lr.sh FACTOR SEED [EPOCHS]}
epochs=${3:-60}
out=$here/mix-lr/f$factor/results
if [ -d "$out/scalar_mix-L0_1_2_3_4_5_6_7_8_9_10_11_12-s$seed" ]; then echo "done already: $out, seed $seed"; exit 0; fi
xfuse train-heads --head scalar_mix --layers all --seed "$seed" --epochs "$epochs" --patience "$epochs" --min-epochs 0 \
  --memory-mb 8192 --threads 1 --bootstrap 0 --device cpu --mix-lr-factor "$factor" --out "$out"
