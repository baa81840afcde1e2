"""What the report computes from one run's saved predictions, computed once and cached beside the report.

Most of a report's time goes into work that depends on a single member (one
seed of a configuration) and one test language: every metric's value, its
bootstrap resamples and the ECE noise floors, for each condition; and the
few-shot temperature scaling draws. A second ``xfuse report`` after a few
more tasks finished should compute only those tasks' entries (and those of the
configurations built from them: late fusion, the seed ensemble).

An **entry** is keyed by its content, as huggingface datasets fingerprints a
transform: the sha256 of everything it is computed from (the member's logits
and labels of the parts it reads, its calibration maps, the report's settings
that change it: metrics, bins, resamples, the resampling seed and columns,
floor simulations and seed, few-shot ks and draws) and of :data:`ENTRY_FORMAT`.
A changed or removed run, or a changed setting, changes the key, so exactly
what depends on it is recomputed; nothing is ever looked up by a run's name.
Entries are written to a temporary file and renamed into place; an entry
that cannot be read back whole, or whose recorded key is not its name, is
recomputed with a one-line notice.

Layout: ``<sweep>/.report-cache/<key[:2]>/<key>.npz``, beside ``report/``;
removing the folder only costs time.

Usage::

    cache = EntryCache(Path("sweeps/e5/.report-cache"))
    key = content_key("metrics", logits, labels, settings)
    entry = cache.load(key)
    if entry is None:
        entry = compute()
        cache.store(key, entry)
"""

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ENTRY_FORMAT = "xfuse-report-entry/1"  # change when an entry's computation changes


def content_key(kind: str, *parts) -> str:
    """sha256 over ``kind`` and ``parts``: arrays by dtype, shape and bytes; anything else by its JSON text."""
    digest = hashlib.sha256(f"{ENTRY_FORMAT}\0{kind}".encode())
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"\0array {array.dtype.str} {array.shape}\0".encode())
            digest.update(array.tobytes())
        else:
            digest.update(("\0" + json.dumps(part, sort_keys=True, default=repr)).encode())
    return digest.hexdigest()


class EntryCache:
    """Entries (dicts of arrays) by content key in a folder; ``folder=None`` caches nothing.

    ``computed`` and ``reused`` list the labels of the entries this instance
    computed and read back (the report counts them).
    """

    def __init__(self, folder: Optional[Path], log: Callable[[str], None] = print):
        self.folder = Path(folder) if folder is not None else None
        self.log = log
        self.computed, self.reused, self.notices = [], [], []

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def load(self, key: str) -> Optional[dict]:
        """The entry stored under ``key``, or None when there is none or it is damaged (with a notice)."""
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as arrays:
                entry = {name: arrays[name] for name in arrays.files}
            if str(entry.pop("__key__")) != key:
                raise ValueError("recorded key differs")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            notice = f"report cache: {path} is damaged ({type(error).__name__}); recomputing it"
            self.notices.append(notice)
            self.log(notice)
            return None
        return entry

    def store(self, key: str, entry: dict) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(temporary, __key__=np.array(key), **entry)
        os.replace(temporary, path)

    def get(self, key: str, label, compute: Callable[[], dict]) -> dict:
        """The entry under ``key``, computed by ``compute()`` and stored when absent or damaged."""
        entry = self.load(key)
        if entry is not None:
            self.reused.append(label)
            return entry
        entry = compute()
        self.store(key, entry)
        self.computed.append(label)
        return entry
