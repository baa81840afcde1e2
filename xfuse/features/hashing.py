"""Content fingerprints: sha256 of files and of canonical JSON.

>>> config_fingerprint({"b": 1, "a": [1, 2]}) == config_fingerprint({"a": [1, 2], "b": 1})
True
"""

import hashlib
import json
from pathlib import Path

_READ_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def config_fingerprint(settings: dict) -> str:
    """Hex sha256 of ``settings`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
