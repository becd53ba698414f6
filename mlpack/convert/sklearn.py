"""scikit-learn: estimators and pipelines (ColumnTransformers over named columns too) through skl2onnx;
files as .skops, or pickles (.pkl, .joblib) with explicit consent."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpack.convert import (
    Converted,
    ConvertOptions,
    Description,
    Trust,
    class_name,
    conversion_failed,
    require,
    top_module,
)
from mlpack.errors import UsageError
from mlpack.manifest import Tolerance
from mlpack.sample import onnx_safe_name
from mlpack.tensors import MISSING_STRING, is_missing

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
# About 15-100x the worst conversion parity and thread-count replay measured for trees and linear models
# (native vs ONNX, 1 vs 2 threads): <= 6.6e-7 abs on probabilities, <= 4.4e-7 rel on regression values.
TOLERANCES = {"probabilities": Tolerance(atol=1e-5, rtol=1e-4), "value": Tolerance(atol=1e-5, rtol=1e-5),
              # a classifier's decision function (see _decision_scores): a float32 sum of large terms near
              # zero differs from float64's by more than 1e-5 of the small result (unscaled iris: SGDClassifier
              # 1.5e-4 on one of 150 scores; SVC(kernel="linear"), two classes, 7.9e-5 on 0.086; labels all the
              # same). The labels, compared exactly, carry the decision itself.
              "decision_function": Tolerance(atol=1e-4, rtol=1e-4)}  # fmt: skip


def _skops(path: Path, trusted_types: tuple[str, ...]) -> Any:
    sio = require("skops.io", "sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise UsageError(f"{path} is not a readable .skops file: {exc}") from None
    # skops' own default trust list is the only blanket trust: anything else the user names
    refused = [t for t in untrusted if t not in trusted_types]
    if refused:
        flags = " ".join(f"--trust-type {t}" for t in refused)
        raise UsageError(
            f"{path} holds types that skops does not trust by default ({', '.join(refused)}); "
            f"if you trust the file's origin, pass {flags}."
        )
    return sio.load(path, trusted=untrusted)


def _pickle(path: Path, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise UsageError(
            f"{path} is a pickle, and unpickling runs arbitrary code: pass --trust-pickle if you trust its "
            "origin, or save the model with skops."
        )
    if path.suffix.lower() == ".joblib":
        return require("joblib", "sklearn").load(path)
    with open(path, "rb") as f:
        return pickle.load(f)


def narrow(array: np.ndarray, precision: str) -> tuple[np.ndarray, str | None]:
    """float32 unless float64 was asked for; integers become floats (skl2onnx's numeric inputs are floats)."""
    if array.dtype.kind == "f" and array.dtype != np.float32 and precision == "float32":
        return array.astype(np.float32), f"{array.dtype}->float32"
    if array.dtype.kind in "iub":
        target = np.float64 if precision == "float64" else np.float32
        return array.astype(target), f"{array.dtype}->{np.dtype(target)}"
    if array.dtype.kind == "O":
        return array.astype(str), None
    return array, None


def _columns(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def needs_frame(model: Any) -> bool:
    """A ColumnTransformer anywhere inside selects columns by name: it takes a DataFrame, one input per column."""
    if type(model).__name__ == "ColumnTransformer":
        return True
    steps = getattr(model, "steps", None) or getattr(model, "transformer_list", None) or []
    return any(needs_frame(step) for _, step in steps)


def _frame(model: Any, feeds: dict[str, np.ndarray], missing_as_nan: bool = True) -> Any:
    """Named inputs as the DataFrame the model was fitted on (ColumnTransformers select columns by name).
    A missing string ("") is NaN again in the columns whose imputer or encoder treats NaN as missing, as
    pandas gives it to them."""
    import pandas as pd

    columns = _columns(model) or list(feeds)
    imputed = _nan_aware_columns(model) if missing_as_nan else set()

    def feed(name: str) -> np.ndarray:  # the feeds carry skl2onnx's input names
        value = feeds[name] if name in feeds else feeds[onnx_safe_name(name)]
        column = value.reshape(len(value), -1)[:, 0]
        if column.dtype.kind == "U" and name in imputed:
            return np.where(column == MISSING_STRING, np.nan, column.astype(object))
        return column

    return pd.DataFrame({name: feed(name) for name in columns})


def _nan_aware_columns(model: Any) -> set[str]:
    """The columns whose first transformer in a ColumnTransformer takes NaN as a missing value: an imputer
    (``missing_values`` NaN) or an encoder that learnt NaN as a category."""
    found: set[str] = set()
    for step in _steps(model):
        indices = getattr(step, "_transformer_to_input_indices", None)  # fitted ColumnTransformers
        names = getattr(step, "feature_names_in_", None)
        if type(step).__name__ != "ColumnTransformer" or indices is None or names is None:
            continue
        for name, transformer, _ in step.transformers_:
            first = transformer.steps[0][1] if hasattr(transformer, "steps") else transformer
            categories = getattr(first, "categories_", None) or []
            if is_missing(getattr(first, "missing_values", 0)) or any(
                any(is_missing(c) for c in cats) for cats in categories
            ):
                found.update(str(names[i]) for i in indices.get(name, []))
    return found


def _register_missing_strings() -> None:
    """In a package a missing string is "", since a string tensor cannot hold NaN. skl2onnx converts a
    SimpleImputer over strings only when its missing value is a string (scikit-learn's default is NaN), and
    writes a OneHotEncoder's learnt NaN category as the text "nan": both convert here as if the model had
    used "" for missing (the scikit-learn model itself is not touched)."""
    import copy

    from skl2onnx.common._registration import register_converter
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder

    def imputer(raw: Any, operator: Any) -> Any:
        if isinstance(operator.inputs[0].type, StringTensorType) and is_missing(raw.missing_values):
            raw = copy.copy(raw)
            raw.missing_values = MISSING_STRING
        return raw

    def encoder(raw: Any, operator: Any) -> Any:
        def strings(categories: np.ndarray) -> np.ndarray:
            if categories.dtype != object:
                return categories
            return np.array([MISSING_STRING if is_missing(c) else c for c in categories], dtype=object)

        raw = copy.copy(raw)
        raw.categories_ = [strings(c) for c in raw.categories_]
        return raw

    def as_missing_string(convert: Any, proxy: Any) -> Any:
        def converter(scope: Any, operator: Any, container: Any) -> None:
            raw = operator.raw_operator
            operator.raw_operator = proxy(raw, operator)
            try:
                convert(scope, operator, container)
            finally:
                operator.raw_operator = raw

        return converter

    for name in ("SklearnImputer", "SklearnSimpleImputer"):
        register_converter(name, as_missing_string(convert_sklearn_imputer, imputer), overwrite=True)
    register_converter(
        "SklearnOneHotEncoder", as_missing_string(convert_sklearn_one_hot_encoder, encoder), overwrite=True
    )


class _IntegerFlags:
    """A skl2onnx container whose nodes get integer flags where a converter passes booleans: onnx 1.17+
    refuses booleans in an ints attribute, and skl2onnx 1.20 writes HistGradientBoosting's
    ``nodes_missing_value_tracks_true`` as booleans."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) for v in value]
        return self._container.add_node(*args, **attrs)


def _wrap_converters(names: tuple[str, ...], flag: str, wrap: Any) -> None:
    """Re-register skl2onnx's converters for ``names`` (``Sklearn<name>``) as ``wrap(convert)``, once:
    ``flag`` marks the wrapped ones, since the registry outlives a build."""
    from skl2onnx.common._registration import _converter_pool, register_converter

    for name in names:
        registered = _converter_pool[f"Sklearn{name}"]
        if not getattr(registered._fct, flag, False):
            wrapped = wrap(registered._fct)
            setattr(wrapped, flag, True)
            options = registered.get_allowed_options()
            register_converter(f"Sklearn{name}", wrapped, overwrite=True, options=options)


def _register_zipmap_option() -> None:
    """skl2onnx's pipeline parser asks every classifier for its ZipMap option, and LinearSVC's converter does
    not declare one: Pipeline(StandardScaler(), LinearSVC()) failed to convert ("Option 'zipmap' not in
    ['nocl', ...]"), with or without options. Declared here (the parser acts on it, not the converter)."""
    from skl2onnx.common._registration import _converter_pool, register_converter

    registered = _converter_pool["SklearnLinearSVC"]
    options = registered.get_allowed_options()
    if "zipmap" not in options:
        register_converter("SklearnLinearSVC", registered._fct, overwrite=True,
                           options={**options, "zipmap": [True, False, "columns"]})  # fmt: skip


def _register_hist_gradient_boosting() -> None:
    """skl2onnx's own HistGradientBoosting converters (trees with NaN going the learnt way), through
    ``_IntegerFlags``."""

    def with_integer_flags(convert: Any) -> Any:
        def converter(scope: Any, operator: Any, container: Any) -> None:
            convert(scope, operator, _IntegerFlags(container))

        return converter

    _wrap_converters(("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"), "integer_flags",
                     with_integer_flags)  # fmt: skip


class _MissingDirections:
    """A skl2onnx container that writes where each split of a scikit-learn tree sends a missing value
    (``tree_.missing_go_to_left``: learnt from NaNs in training, else the child with more samples) into the
    TreeEnsemble's ``nodes_missing_value_tracks_true``. skl2onnx 1.20 leaves it out, and onnxruntime then sends
    every NaN to the false branch: a forest's answer on a missing value would differ from the native one.
    Splits test ``x <= threshold`` with the left child as the true branch, so "true" is "left"."""

    def __init__(self, container: Any, trees: list[Any]) -> None:
        self._container = container
        self._trees = trees

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        if op_type.startswith("TreeEnsemble") and "nodes_treeids" in attrs and "nodes_nodeids" in attrs:
            trees = self._trees_of(attrs)
            if trees is not None:
                attrs["nodes_missing_value_tracks_true"] = [
                    int(trees[tree].missing_go_to_left[node])
                    for tree, node in zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True)
                ]
        return self._container.add_node(op_type, *args, **attrs)

    def _trees_of(self, attrs: dict[str, Any]) -> dict[int, Any] | None:
        """The scikit-learn tree of each tree id in a TreeEnsemble node: a forest's node numbers its trees as
        the model does; a node holding one of many trees (IsolationForest writes one node per tree, each tree
        0) is matched by its thresholds. None when no tree matches: the node is left as skl2onnx wrote it,
        and the build's missing-value probes judge it."""
        ids = {int(t) for t in attrs["nodes_treeids"]}
        if len(ids) > 1 or len(self._trees) == 1:
            return dict(enumerate(self._trees)) if max(ids) < len(self._trees) else None
        splits = [
            (int(node), float(value))
            for node, mode, value in zip(attrs["nodes_nodeids"], attrs["nodes_modes"], attrs["nodes_values"], strict=True)
            if mode != "LEAF"
        ]  # fmt: skip
        nodes, where = len({int(n) for n in attrs["nodes_nodeids"]}), [n for n, _ in splits]
        # skl2onnx moves a float32 threshold by a step or so to keep x <= t exact: close, not equal
        matches = [
            tree for tree in self._trees
            if tree.node_count == nodes
            and np.allclose(tree.threshold[where], [v for _, v in splits], rtol=1e-6, atol=1e-30)
        ]  # fmt: skip
        return {ids.pop(): matches[0]} if len(matches) == 1 else None


_TREES = ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
          "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
          "IsolationForest")  # fmt: skip


def _register_tree_missing_directions() -> None:
    """skl2onnx's converters of scikit-learn's trees and forests, through ``_MissingDirections``."""

    def with_directions(convert: Any) -> Any:
        def converter(scope: Any, operator: Any, container: Any) -> None:
            model = operator.raw_operator
            trees = [e.tree_ for e in model.estimators_] if hasattr(model, "estimators_") else [model.tree_]
            if all(hasattr(tree, "missing_go_to_left") for tree in trees):
                container = _MissingDirections(container, trees)
            convert(scope, operator, container)

        return converter

    _wrap_converters(_TREES, "missing_directions", with_directions)


MATRIX_PROBES = 32  # columns of a feature matrix probed with a missing value, evenly spread


def _allows_nan(model: Any) -> bool:
    """scikit-learn's own word on whether the model takes NaN (trees and forests since 1.4, imputers first in
    a pipeline); False where the tags cannot be read."""
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(model).input_tags.allow_nan)
    except Exception:  # an estimator from elsewhere, an older scikit-learn: no probe, as before
        return False


def missing_probes(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Inputs the golden sample may lack, keyed by what they probe: for each column whose imputer or encoder
    takes NaN as missing, the golden inputs' first row with that column missing ("" or NaN); for each string
    column of a table, that row with a category no one trained on; for a model that takes a float matrix
    and NaN in it, the first row with NaN in each column (at most MATRIX_PROBES of them)."""
    if not needs_frame(model):
        if len(feeds) != 1:
            return {}
        ((name, value),) = feeds.items()
        if value.ndim != 2 or value.dtype.kind != "f" or not len(value) or not _allows_nan(model):
            return {}
        columns = value.shape[1]
        chosen = np.unique(np.linspace(0, columns - 1, min(columns, MATRIX_PROBES)).round().astype(int)).tolist()
        matrix_probes = {}
        for column in chosen:
            row = value[:1].copy()
            row[0, column] = np.nan
            matrix_probes[f"a missing value in 'column {column}'"] = {name: row}
        return matrix_probes
    probes = {}
    for column in sorted(_nan_aware_columns(model)):
        key = column if column in feeds else onnx_safe_name(column)
        if key not in feeds:
            continue
        probe = {name: value[:1].copy() for name, value in feeds.items()}
        if probe[key].dtype.kind == "U":
            probe[key] = np.full_like(probe[key], MISSING_STRING)
        elif probe[key].dtype.kind == "f":
            probe[key] = np.full_like(probe[key], np.nan)
        else:
            continue
        probes[f"a missing value in {column!r}"] = probe
    for key in sorted(k for k, value in feeds.items() if value.dtype.kind == "U"):  # every string column
        probe = {name: value[:1].copy() for name, value in feeds.items()}
        probe[key] = np.full(probe[key].shape, UNSEEN_CATEGORY)
        probes[f"an unseen category in {key!r}"] = probe
    return probes


UNSEEN_CATEGORY = "mlpack probe: a category no one trained on"


# Text: scikit-learn lowercases with str.lower and tokenises with (?u)\b\w\w+\b, Unicode throughout. skl2onnx
# writes a StringNormalizer without a locale (onnxruntime then needs en_US.UTF-8, absent from C.UTF-8 machines
# and slim images) and an ASCII token pattern (words with accents vanish). mlpack names C.UTF-8, which glibc
# 2.35+ builds in and whose case mapping is Unicode's, and the Unicode equivalent of the default pattern.
TEXT_LOCALE = "C.UTF-8"
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
UNICODE_TOKENS = r"[\p{L}\p{N}_]{2,}"  # RE2: runs of 2+ letters, digits or "_", as Python's \w\w+ finds them


def _vectorizer(model: Any) -> Any:
    """The CountVectorizer/TfidfVectorizer a model starts with (it takes one document per row), or None."""
    while hasattr(model, "steps"):
        model = model.steps[0][1]
    return model if any(c.__name__ == "CountVectorizer" for c in type(model).__mro__) else None


def _final(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _takes_zipmap(model: Any) -> bool:
    """Whether skl2onnx would end this classifier with a ZipMap (a list of dicts) unless told not to:
    every one with probabilities, and SVC/NuSVC without (their decision scores)."""
    if hasattr(model, "predict_proba"):
        return True
    from skl2onnx import get_model_alias
    from skl2onnx.common._registration import get_converter

    final = _final(model)
    final = _final(getattr(final, "best_estimator_", final))  # a search (GridSearchCV): the model it chose
    try:
        return "zipmap" in get_converter(get_model_alias(type(final))).get_allowed_options()
    except Exception:  # no converter of its own (registered by alias elsewhere, or none): no ZipMap option
        return False


def _conversion_options(model: Any) -> dict[Any, Any] | None:
    """Classifiers give tensors, not ZipMaps; a text vectorizer gets the locale and token pattern above."""
    vectorizer = _vectorizer(model)
    if vectorizer is None:
        return {"zipmap": False} if _takes_zipmap(model) else None
    text: dict[str, Any] = {"locale": TEXT_LOCALE}
    if vectorizer.analyzer == "word" and vectorizer.token_pattern == DEFAULT_TOKEN_PATTERN:
        text["tokenexp"] = UNICODE_TOKENS
    options: dict[Any, Any] = {type(vectorizer): text}
    if _takes_zipmap(model):
        options[type(_final(model))] = {"zipmap": False}
    return options


def _decision_scores(model: Any, onx: Any, sample: dict[str, np.ndarray], predict: Any) -> Any:
    """A classifier without probabilities (SVC, LinearSVC, SGDClassifier(hinge), Perceptron, RidgeClassifier):
    skl2onnx's "probabilities" output holds its decision function, for two classes as one column, [d, -d]
    (SVC) or [-d, d] (SGDClassifier), whichever the estimator's converter writes. It becomes
    "decision_function", judged as values, holding scikit-learn's decision_function: for two classes the
    column clearly nearest it on the sample (both run here), so that a reader of the package, and parity, get
    what scikit-learn gives. How near is parity's to judge, with the tolerances the user gives."""
    from onnx import TensorProto, helper

    from mlpack import reference
    from mlpack.manifest import SessionSettings
    from mlpack.sample import fit_to_inputs

    outputs = [o.name for o in onx.graph.output]
    if hasattr(model, "predict_proba") or not hasattr(model, "decision_function") or outputs != [
        "label", "probabilities"
    ]:  # fmt: skip
        return onx
    try:
        session = reference.open_session(onx.SerializeToString(), SessionSettings())
        feeds, _ = fit_to_inputs(sample, reference.signature(session)[0])
        scores = np.asarray(reference.run(session, feeds)["probabilities"], dtype=np.float64)
        native = np.asarray(
            predict(model, feeds, ["label", "decision_function"])["decision_function"], dtype=np.float64
        )
    except Exception:  # the sample does not run: the build's own run and parity say why, in their words
        return onx
    graph, declared = onx.graph, onx.graph.output[1]
    rows = declared.type.tensor_type.shape.dim[0]
    if native.ndim == 1 and scores.ndim == 2 and len(scores) == len(native):
        errors = [float(np.max(np.abs(scores[:, i] - native), initial=0.0)) for i in range(scores.shape[1])]
        best = int(np.argmin(errors))
        others = [error for i, error in enumerate(errors) if i != best]
        if others and not min(others) > 10 * errors[best]:
            raise UsageError(
                f"skl2onnx's decision scores for {type(_final(model)).__name__} come as {len(errors)} columns, and "
                "on this sample none is clearly scikit-learn's decision_function (its rows lie on the decision "
                "boundary): give a sample with rows on either side of it."
            )
        graph.initializer.append(helper.make_tensor("mlpack_scores_column", TensorProto.INT64, [], [best]))
        graph.node.append(helper.make_node("Gather", ["probabilities", "mlpack_scores_column"],
                                           ["decision_function"], name="mlpack_decision_function", axis=1))  # fmt: skip
        shape: list[Any] = [rows.dim_param or rows.dim_value or None]
    elif native.ndim == 2 and scores.shape == native.shape:
        graph.node.append(helper.make_node("Identity", ["probabilities"], ["decision_function"],
                                           name="mlpack_decision_function"))  # fmt: skip
        shape = [rows.dim_param or rows.dim_value or None, native.shape[1]]
    else:  # shapes that do not line up: left as written, for parity to refuse in its words
        return onx
    graph.output.remove(declared)
    graph.output.append(
        helper.make_tensor_value_info("decision_function", declared.type.tensor_type.elem_type, shape)
    )
    return onx


ML_OPSET_MAX = 3  # the newest ai.onnx.ml opset skl2onnx's tree converters write and onnxruntime 1.18+ runs


class SklearnConverter:
    name = "sklearn"
    description = "scikit-learn estimators and pipelines (objects, .skops, or trusted .joblib/.pkl)"
    native_runs = True
    takes_wide_floats = True  # parity feeds the native model the sample's own float64 values
    suffixes = (".skops", *PICKLE_SUFFIXES)
    tolerances: ClassVar[dict[str, Tolerance]] = TOLERANCES

    def load(self, path: Path, trust: Trust) -> Any:
        """A .skops file within skops' trust list (and the types the user names); a pickle only on consent.
        Whatever a pickle holds (an XGBoost estimator, say) then finds its own converter."""
        if path.suffix.lower() == ".skops":
            return _skops(path, trust.types)
        return _pickle(path, trust.pickle)

    def accepts(self, model: Any) -> bool:
        return top_module(model) == "sklearn" and hasattr(model, "fit")

    def describe(self, model: Any) -> Description:
        sklearn = require("sklearn", "sklearn")
        return Description("sklearn", sklearn.__version__, class_name(model))

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        require("skl2onnx", "sklearn")
        from skl2onnx import to_onnx

        given = sample
        columns = _columns(model)
        casts: dict[str, str] = {}
        if not needs_frame(model):
            if set(sample) != {""}:  # named numeric columns for a model that takes one matrix
                order = columns or list(sample)
                if set(order) != set(sample):
                    raise UsageError(
                        f"The sample's columns {sorted(sample)} differ from the model's {sorted(order)}."
                    )
                sample = {"": np.hstack([sample[n].reshape(len(sample[n]), -1) for n in order])}
            array = sample[""]
            expected = getattr(model, "n_features_in_", None)
            if expected is not None and (array.ndim != 2 or array.shape[1] != expected):
                raise UsageError(
                    f"The sample has shape {array.shape} but the model expects rows of {expected} features."
                )
            if _vectorizer(model) is not None:  # text: one document per row
                if array.dtype.kind not in "UO" or array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
                    raise UsageError(
                        f"This model takes text, one document per row; the sample holds {array.dtype} in shape "
                        f"{list(array.shape)}: give strings of shape [rows] or [rows, 1]."
                    )
                example = array.astype(str).reshape(-1, 1)
            elif array.dtype.kind in "USO":
                held = "objects" if array.dtype.kind == "O" else "strings"
                raise UsageError(f"This model takes numbers; the sample holds {held}.")
            else:
                example, cast = narrow(array, options.precision)
                if cast:
                    casts["X"] = cast
        else:
            require("pandas", "sklearn")
            if set(sample) == {""} and columns and sample[""].ndim == 2 and sample[""].shape[1] == len(columns):
                sample = {name: sample[""][:, i : i + 1] for i, name in enumerate(columns)}
            missing = sorted(set(columns or sample) - set(sample))
            if missing:
                raise UsageError(f"The sample lacks the columns {missing} that the model was fitted on.")
            narrowed = {}
            for key, value in sample.items():
                narrowed[key], cast = narrow(value.reshape(len(value), -1), options.precision)
                if cast:
                    casts[key] = cast
            example = _frame(model, narrowed, missing_as_nan=False)  # skl2onnx types columns by their first row
        for step in _steps(model):
            categorical = getattr(step, "is_categorical_", None)
            if categorical is not None and np.any(categorical):
                raise UsageError(
                    f"{type(step).__name__} with categorical features does not convert: skl2onnx writes their "
                    "category splits as numeric thresholds, which answer differently; one-hot or ordinal encode "
                    "those columns in the pipeline instead."
                )
        _register_boosters(model)
        _register_missing_strings()
        _register_hist_gradient_boosting()
        _register_tree_missing_directions()
        _register_zipmap_option()
        # the lowest ai.onnx.ml opset that converts (double-precision trees need 3; IsolationForest needs 3)
        for ml_opset in range(3 if options.precision == "float64" else 1, ML_OPSET_MAX + 1):
            try:
                onx = to_onnx(
                    model,
                    example[:1],
                    target_opset={"": options.opset, "ai.onnx.ml": ml_opset},
                    options=_conversion_options(model),
                )
                break
            except Exception as exc:
                if "ai.onnx.ml" in str(exc) and ml_opset < ML_OPSET_MAX:
                    continue  # the model needs a newer ai.onnx.ml: try the next
                raise conversion_failed(f"skl2onnx could not convert {type(model).__name__}", exc) from None
        details: dict[str, Any] = {
            "tool": "skl2onnx",
            "precision": options.precision,
            "ai_onnx_ml_opset": ml_opset,
        }
        locales = {a.s.decode() for n in onx.graph.node if n.op_type == "StringNormalizer" for a in n.attribute
                   if a.name == "locale"}  # fmt: skip
        if locales:
            details["locale"] = sorted(locales)[0]
            details["note"] = (
                f"this model lowercases text with onnxruntime's StringNormalizer, which needs the locale "
                f"{details['locale']} wherever it runs (glibc 2.35+ has it built in; musl and Windows do not); "
                "'İ' (U+0130) lowercases to 'i' there and to 'i̇' in Python, so text holding it gets other tokens"
            )
        onx = _decision_scores(model, onx, given, self.predict)
        return Converted(model=onx, input_cast=casts, details=details)

    def one_input_per_column(self, model: Any) -> bool:
        return needs_frame(model)

    def probes(self, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        return missing_probes(model, feeds)

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        data: Any = _frame(model, feeds) if needs_frame(model) else next(iter(feeds.values()))
        if _vectorizer(model) is not None:
            data = np.asarray(data).reshape(-1)  # documents, one per row

        columns = _columns(model)
        if columns and isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == len(columns):
            import pandas as pd  # fitted on a DataFrame: asked with one, as the user asks it (and no warning)

            data = pd.DataFrame(data, columns=columns)

        def run(data: Any) -> list[Any]:
            if hasattr(model, "predict_proba") and len(output_names) == 2:
                return [model.predict(data), model.predict_proba(data)]
            if (
                hasattr(model, "decision_function")
                and len(output_names) == 2
                and (output_names[1] in ("scores", "decision_function") or len(model.classes_) > 2)
            ):
                # outlier detectors; classifiers without probabilities (see _decision_scores); a supplied
                # export holding the decision function under skl2onnx's name "probabilities", one column per
                # class (for two classes skl2onnx writes one column or two, either way: not compared)
                return [model.predict(data), model.decision_function(data)]
            if hasattr(model, "cluster_centers_") and output_names[1:] == ["scores"]:  # k-means: distances
                return [model.predict(data), model.transform(data)]
            if hasattr(model, "predict"):
                return [model.predict(data)]
            return [model.transform(data)]

        try:
            try:
                results = run(data)
            except ValueError as exc:  # fitted on float64 and strict about it (KMeans): the same values, widened
                if "dtype" not in str(exc) or not _all_float32(data):
                    raise
                results = run(data.astype(np.float64))
        except ValueError as exc:
            raise UsageError(f"The sample does not fit the model: {exc}") from None
        return {name: np.asarray(result) for name, result in zip(output_names, results, strict=False)}


def _all_float32(data: Any) -> bool:
    dtypes = getattr(data, "dtypes", None)  # a DataFrame's columns, else the array's one dtype
    return (
        all(d == np.float32 for d in dtypes) if dtypes is not None else getattr(data, "dtype", None) == np.float32
    )


def _register_boosters(model: Any) -> None:
    """XGBoost and LightGBM estimators inside a scikit-learn pipeline: skl2onnx converts them with
    onnxmltools' converters once they are registered (skl2onnx's documented recipe)."""
    modules = {type(step).__module__.split(".")[0] for step in _steps(model)}
    if not modules & {"xgboost", "lightgbm"}:
        return
    require("onnxmltools", "xgboost" if "xgboost" in modules else "lightgbm")
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if "xgboost" in modules:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(xgboost.XGBClassifier, "XGBoostXGBClassifier",
                                    calculate_linear_classifier_output_shapes, convert_xgboost,
                                    options=classifier_options)  # fmt: skip
        update_registered_converter(xgboost.XGBRegressor, "XGBoostXGBRegressor",
                                    calculate_linear_regressor_output_shapes, convert_xgboost)  # fmt: skip
    if "lightgbm" in modules:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier",
                                    calculate_linear_classifier_output_shapes, convert_lightgbm,
                                    options=classifier_options)  # fmt: skip
        update_registered_converter(lightgbm.LGBMRegressor, "LightGbmLGBMRegressor",
                                    calculate_linear_regressor_output_shapes, convert_lightgbm,
                                    options={"split": None})  # fmt: skip


def _steps(model: Any) -> list[Any]:
    """The estimator and every estimator nested in it (pipeline steps, column transformers' parts)."""
    found = [model]
    for attribute in ("steps", "transformers", "transformer_list"):
        for part in getattr(model, attribute, None) or []:
            child = part[1] if isinstance(part, tuple) else part
            found += _steps(child)
    return found
