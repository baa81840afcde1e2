"""The data path of head training: batches of cached features in bounded memory, without a loop over pairs.

A part's pairs are cut into *blocks* of ``BLOCK_PAIRS`` consecutive pairs
(contiguous rows of every HDF5 layer dataset) and blocks into *windows*. An
epoch is a pure function of the seed and the part's lengths:

1. the blocks are permuted;
2. consecutive permuted blocks form windows of ``ceil(window_pairs / 64)``
   blocks;
3. inside a window the pairs are shuffled, sorted by length (stable) and cut
   into batches of ``batch_size``, and the window's batches are shuffled.

So every pair is seen once an epoch, in an order that does not depend on how
much memory the reader may use. The reader holds the rows of the needed
layers either for the whole part (read once, when they fit in
``memory_bytes``) or for at most two windows (the one in use and the next,
read by a background thread while the head computes), plus one batch's
buffers. Rows stay float16 (the stored dtype) in one ``(L, tokens + 1, E)``
buffer per window whose last row is zeros, on the head's device (so on a
GPU, ``memory_bytes`` bounds GPU memory too, and batches are gathered there);
a batch is one ``index_select`` per layer of that buffer along the token
axis (padding points at the zero row), giving ``(L, B * T, E)``, one cast to float32,
viewed as ``(L, B, T, E)``, and, when asked, the standardization. A whole
part whose float32 rows also fit in ``memory_bytes`` is held *prepared*
instead: cast to float32 and standardized once, when it is read, so that a
batch is the gather alone. Both give the same numbers: the same float32
operations on the same values, once per row instead of once per batch. A
part read once (``prepare=False``, as for the parts only predicted) gains
nothing by it and is held in float16.

Prediction reads windows of consecutive blocks in file order and batches
pairs of similar length together; logits come back in the part's order.

Usage::

    with store.part("train", "en") as part:
        reader = PartReader(part, layers=[4, 12], window_pairs=1024, memory_bytes=2 << 30)
        for batch in reader.epoch(batch_size=64, rng=np.random.default_rng(0)):
            logits = head(batch.features, batch.mask, batch.second_start)   # features (L, B, T, E)
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from xfuse.errors import XfuseError

BLOCK_PAIRS = 64
TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class Batch:
    """One batch, on ``device``: features (L, B, T, E) float32, mask (B, T) bool, second_start and labels (B,).

    ``features`` lives in a buffer the reader reuses: it is valid until the next batch is asked for.
    """

    features: torch.Tensor
    mask: torch.Tensor
    second_start: torch.Tensor
    labels: torch.Tensor
    pairs: np.ndarray  # (B,) row of each pair in its part

    def __len__(self) -> int:
        return len(self.pairs)


class _Window:
    """The rows of some blocks, all needed layers, in one buffer (L, tokens + 1, E).

    Stored float16, or ``prepared``: float32 and already standardized as the reader was asked.
    """

    def __init__(self, rows: torch.Tensor, starts: dict, prepared: bool = False):
        self.rows = rows  # last row of each layer is zeros: padding gathers it
        self.starts = starts  # pair -> first row of that pair in ``rows``
        self.prepared = prepared


class PartReader:
    """Batches of one part's pairs for some layers, reading at most ``memory_bytes`` of features at once."""

    def __init__(self, part, layers: Sequence[int], window_pairs: int = 1024, memory_bytes: int = 2 << 30,
                 device: str = "cpu", prepare: bool = True):
        self.part = part
        self.name = f"{part.split}-{part.lang}"
        self.layers = list(part.resolve(layers))
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:  # the read-ahead thread must use this device too
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.offsets = part.offsets.astype(np.int64)
        self.lengths = np.diff(self.offsets)
        self.labels = part.labels.astype(np.int64)
        self.second_start = part.second_start.astype(np.int64)
        self.ids = part.ids
        self.blocks = [(first, min(first + BLOCK_PAIRS, len(self.lengths)))
                       for first in range(0, len(self.lengths), BLOCK_PAIRS)]
        self.blocks_per_window = max(1, math.ceil(window_pairs / BLOCK_PAIRS))  # windows of whole blocks
        dataset = part._file["layers"][str(self.layers[0])]
        self.width, self.dtype = int(dataset.shape[1]), np.dtype(dataset.dtype)
        bytes_per_token = len(self.layers) * self.width * self.dtype.itemsize
        self.part_bytes = int(self.offsets[-1]) * bytes_per_token
        block_tokens = np.array([self.offsets[b] - self.offsets[a] for a, b in self.blocks])
        biggest_window = np.sort(block_tokens)[::-1][: self.blocks_per_window].sum() * bytes_per_token
        self.resident = self.part_bytes <= memory_bytes
        # the whole part held in float32, when it fits and is asked for (a part read once gains nothing by it)
        self.prepared = prepare and self.resident and self.part_bytes * 4 // self.dtype.itemsize <= memory_bytes
        if not self.resident and 2 * biggest_window > memory_bytes:
            raise XfuseError(
                f"--memory-mb: {memory_bytes / 2**20:.3g} MiB cannot hold two windows of {self.name} "
                f"({2 * biggest_window / 2**20:.3g} MiB for {len(self.layers)} layers); "
                "raise --memory-mb or lower --window-pairs")
        self._whole: Optional[_Window] = None
        self._scratch: dict = {}  # reused batch buffers by dtype (float16 gather, float32 features), see _buffer
        self._standard: Optional[tuple] = None  # (mean, std) per layer and channel, (L, 1, E), see standardize

    def __len__(self) -> int:
        return len(self.lengths)

    def release(self) -> None:
        """Free the rows held for the whole part and the batch buffers (read again if batches are asked for)."""
        self._whole, self._scratch = None, {}

    def load(self) -> None:
        """Read the whole part now, if it is to be held in memory (else windows are read as they are needed)."""
        if self.resident and self._whole is None:
            self._whole = self._read_prepared() if self.prepared else self._read([(0, len(self))])

    # -- reading -------------------------------------------------------------------------------------------

    def _read(self, blocks: Sequence[tuple]) -> _Window:
        """The rows of ``blocks`` ((first, stop) pair ranges) for every layer, in the order given."""
        tokens = sum(int(self.offsets[b] - self.offsets[a]) for a, b in blocks)
        rows = torch.empty((len(self.layers), tokens + 1, self.width), dtype=TORCH_DTYPES[self.dtype.name])
        rows[:, tokens] = 0
        array = rows.numpy()
        starts, cursor = {}, 0
        for first, stop in blocks:
            begin, end = int(self.offsets[first]), int(self.offsets[stop])
            for position, layer in enumerate(self.layers):
                self.part.read_rows_into(layer, begin, end, array[position, cursor : cursor + end - begin])
            starts[(first, stop)] = cursor - begin  # row of pair p: offsets[p] + this
            cursor += end - begin
        return _Window(rows.to(self.device), starts)  # on a GPU, batches are then gathered there

    def _row_chunks(self) -> Iterator[tuple]:
        """(begin, end) token-row ranges covering the part, 16 blocks of pairs at a time (whole-part passes)."""
        step = 16 * BLOCK_PAIRS
        for first in range(0, len(self), step):
            yield int(self.offsets[first]), int(self.offsets[min(first + step, len(self))])

    def _read_prepared(self) -> _Window:
        """The whole part in float32, standardized if asked, read a chunk at a time (peak: float32 plus one chunk)."""
        tokens = int(self.offsets[-1])
        rows = torch.empty((len(self.layers), tokens + 1, self.width), dtype=torch.float32)
        rows[:, tokens] = 0
        for begin, end in self._row_chunks():
            for position, layer in enumerate(self.layers):
                rows[position, begin:end] = torch.from_numpy(self.part._rows(layer, begin, end))
        if self._standard is not None:
            mean, std = (value.cpu() for value in self._standard)  # (L, 1, E)
            rows[:, :tokens].sub_(mean).div_(std)  # as _batch does, once per row
        return _Window(rows.to(self.device), {(0, len(self)): 0}, prepared=True)

    def _windows(self, block_order: Sequence[int]) -> Iterator[tuple]:
        """(blocks of the window, its rows) for consecutive groups of ``block_order``; the next read ahead."""
        groups = [[self.blocks[k] for k in block_order[i : i + self.blocks_per_window]]
                  for i in range(0, len(block_order), self.blocks_per_window)]
        if self.resident:
            self.load()
            for group in groups:
                yield group, self._whole
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xfuse-reader") as reader:
            ahead = reader.submit(self._read, groups[0]) if groups else None
            for index, group in enumerate(groups):
                window = ahead.result()
                ahead = reader.submit(self._read, groups[index + 1]) if index + 1 < len(groups) else None
                yield group, window
                del window

    def channel_moments(self) -> tuple:
        """Mean and standard deviation (L, E) of every stored channel over the part's real tokens.

        Read block by block in float64 (one pass over the part,
        :meth:`xfuse.features.store.FeaturePart.channel_moments`), independent of
        the memory setting; padding never enters.
        """
        return self.part.channel_moments(self.layers, 16 * BLOCK_PAIRS)

    def standardize(self, mean: np.ndarray, std: np.ndarray, floor: float = 1e-6) -> None:
        """From now on, batches hold ``(x - mean) / max(std, floor)`` per layer and channel, zero on padding."""
        as_tensor = lambda array: torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)
        self._standard = (as_tensor(mean)[:, None, :], as_tensor(np.maximum(std, floor))[:, None, :])  # (L, 1, E)
        if self._whole is not None and self._whole.prepared:
            self._whole = None  # prepared without these statistics: read again when next needed

    # -- batches -------------------------------------------------------------------------------------------

    def _batch(self, window: _Window, pairs: np.ndarray, first_row: np.ndarray) -> Batch:
        lengths = self.lengths[pairs]
        width = int(lengths.max())
        positions = np.arange(width)
        mask = positions[None, :] < lengths[:, None]  # (B, T)
        pad_row = window.rows.shape[1] - 1
        index = np.where(mask, first_row[:, None] + positions[None, :], pad_row)  # (B, T)
        flat = torch.from_numpy(index.reshape(-1)).to(self.device, non_blocking=True)
        size = len(self.layers) * flat.numel() * self.width
        flat_shape = (len(self.layers), flat.numel(), self.width)
        features = self._buffer(torch.float32, size).view(len(self.layers), len(pairs), width, self.width)
        flat_features = features.view(flat_shape)  # (L, B*T, E) float32
        mask_tensor = torch.from_numpy(mask).to(self.device, non_blocking=True)
        if window.prepared:  # float32, standardized, padding row zero: the gather is the batch
            _gather(window.rows, flat, flat_features)
        else:
            gathered = self._buffer(window.rows.dtype, size).view(flat_shape)
            _gather(window.rows, flat, gathered)  # (L, B*T, E) float16, where the window is
            flat_features.copy_(gathered)  # one cast
            if self._standard is not None:
                mean, std = self._standard  # (L, 1, E)
                flat_features.sub_(mean).div_(std)  # in place (an out= sub from float16 measured 8x slower here)
                padding = np.flatnonzero(~mask.reshape(-1))  # few: pairs of similar length are batched together
                if padding.size:
                    flat_features.index_fill_(1, torch.from_numpy(padding).to(self.device), 0.0)  # padding: zero
        as_tensor = lambda array: torch.from_numpy(array).to(self.device, non_blocking=True)
        return Batch(features=features, mask=mask_tensor, second_start=as_tensor(self.second_start[pairs]),
                     labels=as_tensor(self.labels[pairs]), pairs=pairs)

    def _buffer(self, dtype: torch.dtype, size: int) -> torch.Tensor:
        """A reused flat buffer of ``dtype`` with at least ``size`` elements (grown, then reused: fresh pages are slow)."""
        if dtype not in self._scratch or self._scratch[dtype].numel() < size:
            self._scratch[dtype] = torch.empty(size, dtype=dtype, device=self.device)
        return self._scratch[dtype][:size]

    def _first_rows(self, window: _Window, group: Sequence[tuple]) -> tuple:
        """The pairs of ``group`` and the first buffer row of each."""
        pairs = np.concatenate([np.arange(a, b) for a, b in group])
        shifts = np.concatenate([np.full(b - a, self._shift(window, (a, b))) for a, b in group])
        return pairs, self.offsets[pairs] + shifts

    def _shift(self, window: _Window, block: tuple) -> int:
        return window.starts[block] if block in window.starts else window.starts[(0, len(self))]

    def epoch(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """One shuffled epoch (module docstring): every pair once, the order fixed by ``rng``."""
        def plan():
            block_order = rng.permutation(len(self.blocks))
            for group, window in self._windows(block_order):
                pairs, first_rows = self._first_rows(window, group)
                shuffled = rng.permutation(len(pairs))
                shuffled = shuffled[np.argsort(self.lengths[pairs[shuffled]], kind="stable")]
                batches = [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]
                for k in rng.permutation(len(batches)):
                    yield window, pairs[batches[k]], first_rows[batches[k]]
                del window  # before the next window is asked for: at most two are held

        return self._batches(plan())

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """Every pair once, for prediction: windows in file order, pairs of similar length batched together."""
        def plan():
            for group, window in self._windows(range(len(self.blocks))):
                pairs, first_rows = self._first_rows(window, group)
                order = np.argsort(self.lengths[pairs], kind="stable")
                for i in range(0, len(order), batch_size):
                    yield window, pairs[order[i : i + batch_size]], first_rows[order[i : i + batch_size]]
                del window  # before the next window is asked for: at most two are held

        return self._batches(plan())

    def _batches(self, plan: Iterator[tuple]) -> Iterator[Batch]:
        """The batches of ``plan`` ((window, pairs, first rows) triples), built one at a time when asked for.

        (Building the next batch in a background thread was measured slower
        here: on two cores it takes a core from the head's own threads.)
        """
        for window, pairs, first_rows in plan:
            batch = self._batch(window, pairs, first_rows)
            del window
            yield batch


def _gather(rows: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> None:
    """``out[l] = rows[l, index]`` for every layer l: rows (L, N, E), index (K,), out (L, K, E).

    One ``index_select`` per layer along the first axis of a (N, E) matrix:
    on CPU this is split across threads, while a single one along the middle
    axis of (L, N, E) is not (measured about 2x slower on two threads).
    """
    for layer in range(rows.shape[0]):
        torch.index_select(rows[layer], 0, index, out=out[layer])


def memory_bytes(megabytes: float) -> int:
    """``--memory-mb`` in bytes, checked."""
    if not megabytes or megabytes <= 0 or not math.isfinite(megabytes):
        raise XfuseError(f"--memory-mb: expected a positive number of MiB, got {megabytes}")
    return int(megabytes * 2**20)
