"""Item 2's intervention: seeds of the layer-0 fusions that did not learn, rerun with layer 0's features replaced.

The runs in ``ABLATION.md`` (about an hour of one core)::

    python docs/experiments/training-recipe/ablate.py run docs/experiments/training-recipe constant \
        mean-L0_12-s1 mean-L0_12-s2 aif-L0_12-s0
    python docs/experiments/training-recipe/ablate.py run docs/experiments/training-recipe noise \
        mean-L0_12-s1 mean-L0_12-s2 aif-L0_12-s0 mean-L0_12-s0     # the last: a seed that learned, as a control
    python docs/experiments/training-recipe/ablate.py run docs/experiments/training-recipe types \
        mean-L0_12-s1 mean-L0_12-s0 mean-L0_12-s2
    python docs/experiments/training-recipe/ablate.py table docs/experiments/training-recipe \\
        > docs/experiments/training-recipe/ABLATION.md

Each RUN (e.g. ``mean-L0_12-s1``) is a run of the default's convergence sweep
(``convergence-m20/default/results``); it is trained again with the same
resolved settings and seed, as a whole curve of ``EPOCHS`` epochs (patience
equal to the cap), with the features of layer 0 (the first layer the head
reads) replaced after scaling, in every part read:

- ``constant``: by zeros, i.e. every token at layer 0's train-en mean: the head
  then sees the last layer only, through the same architecture;
- ``noise``: by a fixed normal vector per stored token (the same in every
  epoch, seeded by the part and the pair), scaled per channel to the spread
  of the layer-0 features it replaces in that batch: an input that carries
  nothing to dev-en by construction (and, differing at every token, is
  easier to fit on train-en than layer 0). CPU only (its generator is).
- ``types``: by a fixed random vector per token *id* (the same for every
  occurrence of a token, in every part), scaled as ``noise``: lexical
  identity without meaning, nearly what layer 0 (the embedding output) is.

If the seeds learn with layer 0 constant, having layer 0 as an input is
what stops them (for ``mean`` that run is the last layer's head with the
same seed). If they also learn with noise in its place, it is what layer 0
carries that stops them; if noise stops them too, an input that can be
fitted without carrying to dev-en is enough. Results go to ``ablation-<mode>/results``
beside this script; runs already there are skipped. Dev-en only in the table.
"""

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

EPOCHS = 20
MODES = ("constant", "noise", "types")
_TYPE_VECTORS = {}  # token id -> its fixed random vector (E,), shared by every part read in this process


def _replace_layer0(mode: str) -> None:
    """Patch xfuse's reader so that the first layer's scaled features are replaced as ``mode`` says."""
    from xfuse.heads import loader

    original = loader.PartReader._batch

    def batch_with_layer0_replaced(self, window, pairs, first_row):
        batch = original(self, window, pairs, first_row)
        if mode == "constant":
            batch.features[0].zero_()
            return batch
        scale = batch.features[0][batch.mask].std(dim=0)  # (E,) the replaced features' spread on real tokens
        if mode == "types":
            rows = _type_rows(self)  # (tokens,) row of each stored token in the reader's table of its ids
            index = np.concatenate([np.arange(self.offsets[p], self.offsets[p + 1]) for p in pairs])
            flat_mask = batch.mask.reshape(-1).numpy()
            flat = batch.features[0].reshape(-1, self.width)  # (B*T, E), a view
            flat[torch.from_numpy(np.flatnonzero(flat_mask))] = scale * self._type_table[torch.from_numpy(rows[index])]
            return batch
        for position, pair in enumerate(pairs):  # a fixed vector per stored token of this part
            start, stop = int(self.offsets[pair]), int(self.offsets[pair + 1])
            generator = torch.Generator().manual_seed(zlib.crc32(f"{self.name}:{start}".encode()))
            batch.features[0, position, : stop - start] = scale * torch.randn(stop - start, self.width,
                                                                              generator=generator)
        return batch  # padding stays zero: only real tokens were written

    loader.PartReader._batch = batch_with_layer0_replaced


def _type_rows(reader) -> np.ndarray:
    """For ``types``: each stored token's row in ``reader._type_table``, the fixed vectors of the part's token ids."""
    if getattr(reader, "_type_rows", None) is None:
        ids = reader.part._file["tokens"]["input_ids"][:].astype(np.int64)
        unique, rows = np.unique(ids, return_inverse=True)
        for token in unique:
            if int(token) not in _TYPE_VECTORS:
                generator = torch.Generator().manual_seed(int(token))
                _TYPE_VECTORS[int(token)] = torch.randn(reader.width, generator=generator)
        reader._type_table = torch.stack([_TYPE_VECTORS[int(token)] for token in unique])  # (ids, E)
        reader._type_rows = rows
    return reader._type_rows


def run(root: Path, mode: str, runs: list) -> None:
    from convergence import config_of  # beside this script
    from xfuse.heads.train import train_heads

    if mode not in MODES:
        raise SystemExit(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    _replace_layer0(mode)
    out = root / f"ablation-{mode}" / "results"
    for name in runs:
        if (out / name).is_dir():
            print(f"{name}: already there", file=sys.stderr)
            continue
        settings = json.loads((root / "convergence-m20" / "default" / "results" / name / "config.json").read_text())
        config = config_of(settings["train"], out=str(out), max_epochs=EPOCHS, patience=EPOCHS, min_epochs=0,
                           n_resamples=0)
        if config.layers.split(",")[0] != "0":
            raise SystemExit(f"{name}: layer 0 must be the first layer the head reads, got --layers {config.layers}")
        print(f"{name}: {mode}, done {train_heads(config, log=lambda line: None)}", file=sys.stderr)


def _summary(result: Path) -> dict:
    curve = [entry["dev_en_loss"] for entry in json.loads((result / "curve.json").read_text())]
    learned = json.loads((result / "metrics.json").read_text())["learned"]
    prior = learned["prior_loss"]
    head = min(curve[:EPOCHS])
    return {"learned": learned["learned"], "gap": head - prior,
            "onset": next((index + 1 for index, loss in enumerate(curve) if loss <= prior - 0.01), None)}


def table(root: Path) -> None:
    print("# Item 2's intervention: layer 0 replaced in seeds that did not learn\n")
    print("Generated by `ablate.py table` from the runs beside it. Each row: a run of the default (those of seeds "
          "0 to 2 that did not learn, and `mean` seed 0, which learned, as a control), as trained (`as trained`, "
          "from `convergence-m20`, or its longest curve of the default's trajectory under `convergence/reference`), "
          f"and the same seed and settings trained {EPOCHS} epochs (whole curve) with layer 0's scaled features "
          "replaced by zeros (`constant`), by a fixed random vector per stored token (`noise`) or per token id "
          f"(`types`). Cells: `learned`, the best dev-en loss of the first {EPOCHS} epochs minus the prior's, and "
          "the onset (first epoch 0.01 below the prior). Dev-en only.\n")
    print("| run | as trained | " + " | ".join(MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    names = sorted({path.name for mode in MODES for path in (root / f"ablation-{mode}" / "results").glob("*")
                    if path.is_dir()})
    for name in names:
        cells = []
        for folder in [None] + [f"ablation-{mode}" for mode in MODES]:
            if folder is None:
                candidates = [root / "convergence" / "reference" / "results" / name,
                              root / "convergence-m20" / "default" / "results" / name]
                result = next((path for path in candidates if path.is_dir()), None)
            else:
                result = root / folder / "results" / name
            if result is None or not result.is_dir():
                cells.append("not run")
                continue
            row = _summary(result)
            cells.append(f"{'L' if row['learned'] else '-'} {row['gap']:+.3f}, onset {row['onset'] or 'never'}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    command, root = sys.argv[1], Path(sys.argv[2])
    if command == "run":
        run(root, sys.argv[3], sys.argv[4:])
    elif command == "table":
        table(root)
    else:
        raise SystemExit(f"command: expected run or table, got {command!r}")
