"""mlpack.load: a packaged model ready to predict, with its integrity checked on load.

Only onnxruntime and numpy run the model, with the session options the package recorded.
"""

from __future__ import annotations

import warnings
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

    def predict(self, feeds: Any, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Named outputs for what build accepts as a sample: a dict of arrays keyed by input name, a tuple
        of arrays in the model's input order, one array for a one-input model, or a pandas DataFrame for a
        tabular model. Where the build recorded a float64->float32 cast of an input, float64 is cast the same
        way, with a warning saying so; nothing else is cast."""
        names = outputs or [spec.name for spec in self.outputs]
        check_names(names, self.outputs, "output")
        feeds = check_feeds(self._named(feeds), self.inputs)
        source = self.package.manifest.source
        refused = set(source.details.get("refuses_nan") or ()) if source else set()
        for name, value in feeds.items():
            if name in refused and np.isnan(value).any():
                where = [int(i) for i in np.argwhere(np.isnan(value))[0]]
                model_class = source.model_class if source else "?"
                raise UsageError(
                    f"Input {name!r} holds NaN (at {where}), which the native model ({model_class}) refuses: "
                    "impute missing values before predicting."
                )
        return dict(zip(names, reference.infer(self.session, names, feeds), strict=True))

    def _named(self, feeds: Any) -> dict[str, Any]:
        recorded = self.package.manifest.parity.input_cast if self.package.manifest.parity else {}
        if hasattr(feeds, "columns") and hasattr(feeds, "to_numpy"):  # a DataFrame: matched as build matches it
            from mlpack.sample import by_feature_names, fit_to_inputs, load_sample

            source = self.package.manifest.source
            features = source.details.get("feature_names") if source else None
            table = load_sample(feeds)
            if features:  # by the names the model was fitted with, never by position
                table = by_feature_names(table, list(features), len(self.inputs) > 1)
            fitted, casts = fit_to_inputs(table, self.inputs)
            for name, cast in casts.items():
                if recorded.get(name) != cast:
                    raise UsageError(f"Input {name!r} would need the cast {cast}, which the build did not record.")
                _cast_warning(name)
            return dict(fitted)
        if isinstance(feeds, Mapping):
            named = dict(feeds)
        elif isinstance(feeds, (tuple, list)) and not isinstance(feeds, np.ndarray) and len(self.inputs) > 1:
            if len(feeds) != len(self.inputs):
                raise UsageError(
                    f"The model takes {len(self.inputs)} inputs ({', '.join(s.name for s in self.inputs)}); "
                    f"the tuple holds {len(feeds)}."
                )
            named = {spec.name: value for spec, value in zip(self.inputs, feeds, strict=True)}
        elif len(self.inputs) == 1:
            named = {self.inputs[0].name: feeds}
        else:
            raise UsageError(
                "This model has several inputs: pass a dict keyed by input name, or a tuple in order."
            )
        for spec in self.inputs:
            value = named.get(spec.name)
            if recorded.get(spec.name) == "float64->float32" and getattr(value, "dtype", None) == np.float64:
                _cast_warning(spec.name)
                named[spec.name] = np.asarray(value).astype(np.float32)
        return named


def _cast_warning(name: str) -> None:
    warnings.warn(f"Input {name!r} was given as float64 and cast to float32, as the build recorded.", stacklevel=4)


def load(path: str | Path, *, threads: int | None = None, check: bool = True) -> Model:
    """Open a package for prediction; with ``check`` (the default) refuse one whose files were changed."""
    package = open_intact(path, "refusing to load it.") if check else open_package(path)
    settings = reference.replay_settings(package.manifest.runtime.session, threads)
    # a loaded model lives long and sees batches of every size: memory goes back once a large one is done
    session = reference.open_session(package.path / package.manifest.model.file, settings, keep_memory=False)
    inputs, outputs = reference.signature(session)
    return Model(package=package, session=session, inputs=inputs, outputs=outputs)
