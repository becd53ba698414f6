"""KServe's own CustomResourceDefinitions, applied to a document as the Kubernetes API server applies them.

The CRDs in tests/data/kserve are KServe's generated ones (see the README there). A CRD's openAPIV3Schema is
a dialect of JSON Schema; ``validator`` turns it into a jsonschema validator with the API server's rules:

- strict field validation (``kubectl apply --validate=strict``, the default since Kubernetes 1.25): an object
  whose schema lists its properties takes no other field, unless it says
  ``x-kubernetes-preserve-unknown-fields``;
- ``x-kubernetes-int-or-string``: an integer or a string; ``nullable``: null as well;
- ``x-kubernetes-list-type: set`` items are unique, and ``map`` items are unique by their
  ``x-kubernetes-list-map-keys`` (a key's schema default counts, as the server defaults it first);
- ``metadata`` is checked as ObjectMeta is (the CRD leaves it to the server): the name a DNS-1123 subdomain
  (and a DNS-1035 label where KServe's webhook asks one), label and annotation keys and values in
  Kubernetes' syntax.
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data" / "kserve"
CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml.gz",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_clusterservingruntimes.yaml.gz",
}
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _kubernetes_dialect(schema: Any) -> Any:
    """The schema with the API server's rules written in plain JSON Schema (and the list-map keyword kept)."""
    if isinstance(schema, list):
        return [_kubernetes_dialect(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: value if key in ("default", "enum", "required") else _kubernetes_dialect(value)
        for key, value in schema.items()
        if key != "properties"
    }
    if "properties" in schema:  # a map of names to schemas: a property called "type" is no keyword
        out["properties"] = {name: _kubernetes_dialect(value) for name, value in schema["properties"].items()}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _unique_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    from jsonschema import ValidationError  # type: ignore[import-untyped]  # no stubs installed

    if not isinstance(instance, list) or schema.get("x-kubernetes-list-type") != "map":
        return
    defaults = {key: schema.get("items", {}).get("properties", {}).get(key, {}).get("default") for key in keys}
    seen: set[tuple[Any, ...]] = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        identity = tuple(item.get(key, defaults[key]) for key in keys)
        if identity in seen:
            yield ValidationError(f"duplicate entry for keys {dict(zip(keys, identity, strict=True))}")
        seen.add(identity)


@cache
def _crd(file: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml reads the 2 MB CRD in a second
    return dict(yaml.load(gzip.decompress((DATA / file).read_bytes()), Loader=loader))


def validator(api_version: str, kind: str) -> Any:
    """A jsonschema validator for the stored version of the CRD that serves ``api_version``/``kind``."""
    from jsonschema import Draft202012Validator, validators

    crd = _crd(CRDS[(api_version, kind)])
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = _kubernetes_dialect(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    kubernetes = validators.extend(Draft202012Validator, {"x-kubernetes-list-map-keys": _unique_map_keys})
    return kubernetes(schema)


def _metadata_problems(metadata: dict[str, Any], kind: str) -> list[str]:
    problems = []
    name = metadata.get("name", "")
    if not (len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name)):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    # KServe's webhook: an InferenceService's name becomes a Service's, so a DNS-1035 label
    if kind == "InferenceService" and not (len(name) <= 63 and DNS_LABEL_1035.fullmatch(name)):
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label")
    for field in ("labels", "annotations"):
        for key, value in (metadata.get(field) or {}).items():
            prefix, _, local = key.rpartition("/")
            if (prefix and not (len(prefix) <= 253 and DNS_SUBDOMAIN.fullmatch(prefix))) or not (
                len(local) <= 63 and QUALIFIED_NAME.fullmatch(local)
            ):
                problems.append(f"metadata.{field} key {key!r} is not a qualified name")
            if not isinstance(value, str):
                problems.append(f"metadata.{field}[{key!r}] is not a string")
            elif field == "labels" and value and not (len(value) <= 63 and QUALIFIED_NAME.fullmatch(value)):
                problems.append(f"metadata.labels[{key!r}] = {value!r} is not a label value")
    return problems


def problems(document: dict[str, Any]) -> list[str]:
    """Every reason the API server (with KServe's CRDs installed) would refuse ``document``; [] if none."""
    check = validator(document["apiVersion"], document["kind"])
    found = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(document)'}: {error.message}"
        for error in check.iter_errors(document)
    ]
    return found + _metadata_problems(document.get("metadata") or {}, document["kind"])
