"""mlpack.load: a packaged model ready to predict, with its integrity checked on load.

Only onnxruntime and numpy run the model, with the session options the package recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import reference
from mlpack.errors import UsageError
from mlpack.manifest import TensorSpec
from mlpack.package import Package, open_intact, open_package
from mlpack.tensors import check_feeds, check_names


@dataclass(frozen=True)
class Model:
    """A loaded package. ``predict`` takes named arrays (or one array for a one-input model)."""

    package: Package
    session: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    def predict(
        self, feeds: Mapping[str, np.ndarray] | np.ndarray, outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            if len(self.inputs) != 1:
                raise UsageError("This model has several inputs: pass a dict of arrays keyed by input name.")
            feeds = {self.inputs[0].name: feeds}
        names = outputs or [spec.name for spec in self.outputs]
        check_names(names, self.outputs, "output")
        return dict(zip(names, self.session.run(names, check_feeds(feeds, self.inputs)), strict=True))


def load(path: str | Path, *, threads: int | None = None, check: bool = True) -> Model:
    """Open a package for prediction; with ``check`` (the default) refuse one whose files were changed."""
    package = open_intact(path, "refusing to load it.") if check else open_package(path)
    settings = reference.replay_settings(package.manifest.runtime.session, threads)
    # a loaded model lives long and sees batches of every size: memory goes back once a large one is done
    session = reference.open_session(package.path / package.manifest.model.file, settings, keep_memory=False)
    inputs, outputs = reference.signature(session)
    return Model(package=package, session=session, inputs=inputs, outputs=outputs)
