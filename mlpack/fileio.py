"""Streaming hashes, atomic writes, canonical JSON and deterministic .npz files."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.tensors import bfloat16_restored

CHUNK = 1 << 20  # 1 MiB: hashing a file of any size keeps memory flat
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date, so .npz bytes never hold a clock


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(data: Any) -> bytes:
    """Sorted keys, fixed separators, trailing newline: the same data always gives the same bytes."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write beside the target, fsync, then rename: readers see the old file or the new one, never half.
    ``mode`` 0o600 keeps a secret (a private key) unreadable to others from the first byte."""
    import tempfile  # here: verify, which writes nothing, should not pay for importing it

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 would hide package files from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Like ``np.savez`` but byte-reproducible: sorted members, fixed timestamps, no pickled objects."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if array.dtype == object:
                array = array.astype(str)  # object arrays would need pickle to load
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a package's .npz without ever unpickling, and without letting it claim more memory than it takes
    on disk: mlpack writes members stored, never compressed, so a compressed member (which could inflate a
    megabyte into gigabytes) is refused, as is a member whose header promises more data than it holds."""
    from mlpack.errors import IntegrityError

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise IntegrityError(
                        f"{path} holds a compressed member {info.filename!r}; mlpack writes none."
                    )
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):  # what numpy writes for plain arrays
                        raise IntegrityError(f"{path} member {info.filename!r} has .npy version {version}.")
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(member)
                if dtype.hasobject:
                    raise IntegrityError(
                        f"{path} member {info.filename!r} holds Python objects ({dtype}), which only unpickling "
                        "reads: mlpack never unpickles, and writes strings as fixed-width text."
                    )
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise IntegrityError(f"{path} member {info.filename!r} claims {shape} {dtype}; it holds less.")
        with np.load(path, allow_pickle=False) as data:
            return {key: bfloat16_restored(data[key]) for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise IntegrityError(f"{path} is not a readable .npz: {str(exc)[:200]}") from None
