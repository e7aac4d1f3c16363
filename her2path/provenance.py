"""Digests that tie a result to what made it: input files, settings, guideline tables, model weights.

One scheme for inputs everywhere (``digest_files``): the sha256 of a single
file as ``sha256sum`` prints it, and for several files the sha256 of their
hex digests joined by newlines, in the order given. Paths are not hashed, so
moving a slide does not make its result stale.

Examples
--------
>>> import hashlib, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
>>> _ = p.write_bytes(b"slide")
>>> digest_files([p]) == hashlib.sha256(b"slide").hexdigest()
True
>>> len(digest_model({"a": 1}))
64
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CHUNK = 1 << 22   # bytes read at a time


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks (any size, bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def digest_files(paths: Iterable[str | Path]) -> str:
    """The input digest of one or more files (see the module docstring)."""
    digests = [file_sha256(p) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def array_sha256(a: np.ndarray) -> str:
    """Hex sha256 of an array's bytes (C order), for inputs given as arrays."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def digest_model(model) -> str:
    """Hex sha256 of a pydantic model (or a JSON-able value) as canonical JSON."""
    data = model.model_dump(mode="json") if hasattr(model, "model_dump") else model
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
