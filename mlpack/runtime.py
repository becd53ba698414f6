"""mlpack.load: a packaged model ready to predict, with its integrity checked on load.

Only onnxruntime and numpy run the model, with the session options the package recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import reference
from mlpack.errors import UsageError
from mlpack.package import Package, open_intact, open_package
from mlpack.sample import ORT_DTYPES


@dataclass(frozen=True)
class Model:
    """A loaded package. ``predict`` takes named arrays (or one array for a one-input model)."""

    package: Package
    session: Any
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    def check(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Names, dtypes and shapes against the signature: one clear sentence for the first that differs."""
        wanted = {spec["name"]: spec for spec in self.inputs}
        unknown = sorted(set(feeds) - set(wanted))
        if unknown:
            raise UsageError(f"Unknown input {unknown[0]!r}; the model takes {sorted(wanted)}.")
        missing = sorted(set(wanted) - set(feeds))
        if missing:
            raise UsageError(f"Missing input {missing[0]!r}; the model takes {sorted(wanted)}.")
        checked = {}
        for name, value in feeds.items():
            spec = wanted[name]
            array = np.asarray(value)
            dtype = np.dtype(ORT_DTYPES.get(spec["type"], np.float32))
            if array.dtype != dtype and not (dtype.kind == "U" and array.dtype.kind in "UO"):
                raise UsageError(f"Input {name!r} must be {dtype}, not {array.dtype}.")
            if not reference.shape_fits(spec["shape"], array.shape):
                raise UsageError(f"Input {name!r} must have shape {spec['shape']}, not {list(array.shape)}.")
            checked[name] = array.astype(str) if dtype.kind == "U" else np.ascontiguousarray(array)
        return checked

    def predict(
        self, feeds: Mapping[str, np.ndarray] | np.ndarray, outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            if len(self.inputs) != 1:
                raise UsageError("This model has several inputs: pass a dict of arrays keyed by input name.")
            feeds = {self.inputs[0]["name"]: feeds}
        names = outputs or [spec["name"] for spec in self.outputs]
        known = {spec["name"] for spec in self.outputs}
        if unknown := [n for n in names if n not in known]:
            raise UsageError(f"Unknown output {unknown[0]!r}; the model gives {sorted(known)}.")
        return dict(zip(names, self.session.run(names, self.check(feeds)), strict=True))


def load(path: str | Path, *, threads: int | None = None, check: bool = True) -> Model:
    """Open a package for prediction; with ``check`` (the default) refuse one whose files were changed."""
    package = open_intact(path, "refusing to load it.") if check else open_package(path)
    settings = reference.SessionSettings.from_dict(package.manifest["runtime"]["session"])
    if threads is not None:
        settings = replace(settings, intra_op_num_threads=threads)
    session = reference.open_session(package.path / package.manifest["model"]["file"], settings)
    signature = reference.signature(session)
    return Model(package=package, session=session, inputs=signature["inputs"], outputs=signature["outputs"])
