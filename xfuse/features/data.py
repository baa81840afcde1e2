"""PAWS-X in the official ``x-final`` layout, read under the zero-shot protocol.

Layout of a data directory (the unpacked official archive)::

    <lang>/train.tsv  <lang>/translated_train.tsv  <lang>/dev_2k.tsv  <lang>/test_2k.tsv

Each file has the header ``id  sentence1  sentence2  label``, tab-separated,
UTF-8, no quoting; a leading byte-order mark (as spreadsheet tools write) and
CRLF line endings are accepted. Ids are opaque strings. Rows whose sentence is
the literal ``NS`` (not translated), rows with an empty or whitespace-only
sentence (nothing to encode: dropped and counted like ``NS``, since PAWS-X's
own files mark an untranslated sentence that way too) and rows labelled
``-1`` or left empty are dropped and counted, in that order of precedence;
anything else that is not a 0/1 label, a row without exactly four fields,
bytes that are not UTF-8, or a file without a header stop with an error naming
file and line.

The zero-shot protocol: train on ``en/train.tsv``; select and calibrate on
``en/dev_2k.tsv``; evaluate on ``test_2k.tsv`` of all seven languages. The dev
sets of the other languages are read too, for per-language oracle
temperatures, which are reported apart from the zero-shot numbers.
``translated_train.tsv`` is never read. No evaluated id may be a training id,
and no training sentence may equal an evaluated one; training pairs from the
source family of an evaluated sentence are dropped (or kept, if asked) and
counted (:mod:`xfuse.features.leakage`).

Usage::

    parts = load_protocol(Path("../shared/pawsx"), split="all", languages=LANGUAGES)
    for pairs in parts:
        print(pairs.split, pairs.lang, len(pairs), pairs.dropped_not_translated)
"""

import dataclasses
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from xfuse.errors import XfuseError
from xfuse.features.hashing import config_fingerprint, file_sha256
from xfuse.features.leakage import FAMILY_THRESHOLD, leakage_report

LANGUAGES = ("en", "de", "es", "fr", "ja", "ko", "zh")
TRAIN_LANGUAGE = "en"
SPLITS = ("train", "dev", "test")
SPLIT_FILES = {"train": "train.tsv", "dev": "dev_2k.tsv", "test": "test_2k.tsv"}
HEADER = ("id", "sentence1", "sentence2", "label")
NOT_TRANSLATED = "NS"
UNLABELLED = ("-1", "")
BYTE_ORDER_MARK = "\ufeff"
SAME_FAMILY_POLICIES = ("drop", "keep")
PAWSX_URL = "https://storage.googleapis.com/paws/pawsx/x-final.tar.gz"
DATA_DIR_ENV = "XFUSE_DATA_DIR"


@dataclass(frozen=True)
class PairSet:
    """The kept rows of one PAWS-X file, in file order."""

    split: str
    lang: str
    path: Path
    sha256: str
    ids: tuple
    sentence1: tuple
    sentence2: tuple
    labels: np.ndarray  # (N,) int8, 0 or 1
    dropped_not_translated: int
    dropped_unlabelled: int
    lines: tuple = ()  # line number in the file of each kept row
    dropped_empty: int = 0
    leakage: Optional[dict] = None  # training file only: the content-level leakage check (xfuse.features.leakage)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def content_sha256(self) -> str:
        """Fingerprint of the kept rows (ids, sentences, labels), so a part changes when its rows do."""
        return config_fingerprint({"ids": list(self.ids), "sentence1": list(self.sentence1),
                                   "sentence2": list(self.sentence2), "labels": self.labels.tolist()})

    def without(self, positions: Sequence[int], leakage: dict) -> "PairSet":
        """The same file less the rows at ``positions``, with the leakage check that chose them."""
        drop = set(positions)
        keep = [i for i in range(len(self)) if i not in drop]
        if not keep:
            raise XfuseError(f"{self.path}: every training pair shares a source family with an evaluated sentence")
        return dataclasses.replace(
            self, ids=tuple(self.ids[i] for i in keep), sentence1=tuple(self.sentence1[i] for i in keep),
            sentence2=tuple(self.sentence2[i] for i in keep), labels=self.labels[keep],
            lines=tuple(self.lines[i] for i in keep), leakage=leakage)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.lang}"


def read_pairs(path: Path, split: str, lang: str) -> PairSet:
    """Read one PAWS-X TSV file, dropping ``NS`` and unlabelled rows."""
    path = Path(path)
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise XfuseError(f"PAWS-X file not found: {path}") from None
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    if not any(line.strip() for line in raw_lines):
        raise XfuseError(f"{path}: the file is empty (no header); expected the header {' '.join(HEADER)!r} "
                         "and tab-separated rows")
    ids, first, second, labels, lines = [], [], [], [], []
    seen_ids = {}
    dropped_not_translated = dropped_unlabelled = dropped_empty = 0
    for number, raw in enumerate(raw_lines, start=1):
        line = _decode_line(path, number, raw)
        if number == 1:
            line = line.removeprefix(BYTE_ORDER_MARK)
        fields = line.split("\t")
        if number == 1:
            if tuple(fields) != HEADER:
                raise XfuseError(
                    f"{path}:1: expected the header {' '.join(HEADER)!r} (tab-separated), "
                    f"found {' '.join(fields)[:80]!r}"
                )
            continue
        if len(fields) != len(HEADER):
            raise XfuseError(
                f"{path}:{number}: expected 4 tab-separated fields "
                f"(id, sentence1, sentence2, label), found {len(fields)}"
            )
        pair_id, sentence1, sentence2, label = fields
        if not pair_id:
            raise XfuseError(f"{path}:{number}: empty id")
        if pair_id in seen_ids:
            raise XfuseError(
                f"{path}:{number}: duplicate id {pair_id!r} (first at line {seen_ids[pair_id]})"
            )
        seen_ids[pair_id] = number
        if label not in ("0", "1") and label not in UNLABELLED:
            raise XfuseError(f"{path}:{number}: label {label!r} is not 0, 1 or -1")
        if NOT_TRANSLATED in (sentence1, sentence2):
            dropped_not_translated += 1
            continue
        if not sentence1.strip() or not sentence2.strip():
            dropped_empty += 1
            continue
        if label in UNLABELLED:
            dropped_unlabelled += 1
            continue
        ids.append(pair_id)
        first.append(sentence1)
        second.append(sentence2)
        labels.append(int(label))
        lines.append(number)
    if not ids:
        raise XfuseError(f"{path}: no labelled pairs left after dropping NS, empty-sentence and -1 rows")
    return PairSet(
        split=split,
        lang=lang,
        path=path,
        sha256=file_sha256(path),
        ids=tuple(ids),
        sentence1=tuple(first),
        sentence2=tuple(second),
        labels=np.asarray(labels, dtype=np.int8),
        dropped_not_translated=dropped_not_translated,
        dropped_unlabelled=dropped_unlabelled,
        lines=tuple(lines),
        dropped_empty=dropped_empty,
    )


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as error:
        raise XfuseError(
            f"{path}:{number}: invalid UTF-8 (byte 0x{raw[error.start]:02x} at byte {error.start + 1})"
        ) from None


def protocol_parts(split: str, languages: Sequence[str]) -> list:
    """The (split, lang) files a ``--split`` choice covers, training first.

    Training is English only (the zero-shot protocol); ``languages`` selects
    the dev and test files.
    """
    if split not in ("all",) + SPLITS:
        raise XfuseError(f"--split: expected one of all, train, dev, test; got {split!r}")
    languages = validate_languages(languages)
    parts = []
    if split in ("all", "train"):
        parts.append(("train", TRAIN_LANGUAGE))
    for evaluated in ("dev", "test"):
        if split in ("all", evaluated):
            parts.extend((evaluated, lang) for lang in languages)
    return parts


def validate_languages(languages: Iterable[str]) -> tuple:
    """Check language codes against PAWS-X's seven; keeps the given order."""
    languages = tuple(languages)
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise XfuseError(
            f"--langs: unknown language {', '.join(unknown) or '(none given)'}; "
            f"expected some of {','.join(LANGUAGES)}"
        )
    return tuple(dict.fromkeys(languages))


def split_path(data_dir: Path, split: str, lang: str) -> Path:
    return Path(data_dir) / lang / SPLIT_FILES[split]


def load_protocol(data_dir: Path, split: str, languages: Sequence[str], same_family: str = "drop",
                  threshold: float = FAMILY_THRESHOLD) -> list:
    """Read every file ``split`` covers, after checking that all exist.

    Whenever ``en/train.tsv`` exists, it is checked against every dev and test
    file present in ``data_dir`` (all languages, whatever ``split`` and
    ``languages`` ask, so the training part never depends on them): an evaluated
    id that is a training id, or a training sentence equal to an evaluated one,
    is an error; training pairs of an evaluated sentence's source family are
    dropped (``same_family="drop"``) or kept (``"keep"``), and either way the
    training ``PairSet`` carries the check's report in ``leakage``.
    """
    if same_family not in SAME_FAMILY_POLICIES:
        raise XfuseError(f"--same-family: expected drop or keep, got {same_family!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise XfuseError(
            f"data directory not found: {data_dir} (--data-dir or ${DATA_DIR_ENV}); "
            "expected the PAWS-X x-final layout <lang>/{train.tsv,dev_2k.tsv,test_2k.tsv}"
        )
    parts = protocol_parts(split, languages)
    missing = [split_path(data_dir, s, lang) for s, lang in parts if not split_path(data_dir, s, lang).is_file()]
    if missing:
        names = ", ".join(str(path) for path in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        hint = ""
        if ("train", TRAIN_LANGUAGE) in parts and not split_path(data_dir, "train", TRAIN_LANGUAGE).is_file():
            hint = " (the zero-shot protocol trains on en/train.tsv; --split dev or --split test extract without it)"
        raise XfuseError(f"missing PAWS-X file: {names}{more}{hint}")
    read = {(s, lang): read_pairs(split_path(data_dir, s, lang), s, lang) for s, lang in parts}
    train_path = split_path(data_dir, "train", TRAIN_LANGUAGE)
    if train_path.is_file():
        train = read.get(("train", TRAIN_LANGUAGE)) or read_pairs(train_path, "train", TRAIN_LANGUAGE)
        evaluated = [read.get((s, lang)) or read_pairs(split_path(data_dir, s, lang), s, lang)
                     for s in ("dev", "test") for lang in LANGUAGES if split_path(data_dir, s, lang).is_file()]
        check_no_leakage(train.ids, train_path, evaluated)
        report = leakage_report(train, evaluated, threshold) | {"policy": same_family}
        if ("train", TRAIN_LANGUAGE) in read:
            read["train", TRAIN_LANGUAGE] = (train.without(report["flagged_positions"], report)
                                            if same_family == "drop" else dataclasses.replace(train, leakage=report))
    return [read[part] for part in parts]


def _read_ids(path: Path) -> tuple:
    return read_pairs(path, "train", TRAIN_LANGUAGE).ids


def check_no_leakage(train_ids: Sequence[str], train_path: Path, evaluated: Sequence[PairSet]) -> None:
    """Fail if an evaluated pair's id is a training id.

    Ids are shared across languages (row id N in every language is a
    translation of the same English pair), so an evaluated id among the
    training ids means training on an evaluated pair or its translation.
    """
    train_ids = set(train_ids)
    for pairs in evaluated:
        leaked = [pair_id for pair_id in pairs.ids if pair_id in train_ids]
        if leaked:
            shown = ", ".join(repr(pair_id) for pair_id in leaked[:3])
            raise XfuseError(
                f"{pairs.path}: {len(leaked)} evaluated id(s) also in {train_path} ({shown}); "
                "training must not see evaluated pairs or their translations"
            )


def resolve_data_dir(option: Optional[str], cache_root: Path, url: str = PAWSX_URL) -> Path:
    """``--data-dir``, else ``$XFUSE_DATA_DIR``, else the archive downloaded into the cache."""
    chosen = option or os.environ.get(DATA_DIR_ENV)
    if chosen:
        return Path(chosen)
    return download_pawsx(url, Path(cache_root) / "data")


def download_pawsx(url: str, dest: Path) -> Path:
    """Download and unpack the official archive once; returns ``dest/x-final``."""
    unpacked = dest / "x-final"
    if unpacked.is_dir():
        return unpacked
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "x-final.tar.gz"
    if not archive.is_file():
        _download(url, archive)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        if not (staging / "x-final").is_dir():
            raise XfuseError(f"{archive}: no x-final/ folder inside the archive")
        os.replace(staging / "x-final", unpacked)
    except tarfile.TarError as error:
        raise XfuseError(f"{archive}: not a readable tar.gz archive ({error}); delete it and retry") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return unpacked


def _download(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise XfuseError(
            f"could not download PAWS-X from {url} ({reason}); "
            f"pass --data-dir DIR or set ${DATA_DIR_ENV} to a folder in the x-final layout"
        ) from None
    os.replace(partial, target)
