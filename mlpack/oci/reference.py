"""Registry references, ``host[:port]/repository[:tag][@sha256:…]``, parsed strictly: a typo must fail here,
not become a request to some other host."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlpack.errors import UsageError

LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?P<registry>\[[0-9A-Fa-f:.]+\](?::[0-9]+)?|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z0-9+._-]+:[A-Za-z0-9=_-]+))?$"
)
# The only digest mlpack accepts, in references and in whatever a registry sends back.
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """Where an artifact lives: ``host[:port]/repository[:tag][@sha256:…]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"

    @property
    def hostname(self) -> str:
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.partition(":")[0]

    def base_url(self, insecure: bool | None = None) -> str:
        """Plain HTTP only for loopback (unless insecure=False) or when asked (insecure=True), as Docker does."""
        plain = insecure if insecure is not None else self.hostname.lower() in LOOPBACK
        return f"{'http' if plain else 'https'}://{self.registry}"


def parse_reference(ref: str) -> Reference:
    """Parse REF strictly: a typo must fail here, not become a request to some other host."""
    if "://" in ref:
        raise UsageError(
            f"{ref!r} is a URL; give REF as host[:port]/repository[:tag] (plain HTTP: pass --insecure)."
        )
    match = _REFERENCE.match(ref)
    if not match:
        hint = " (repository names are lowercase)" if ref != ref.lower() and "@" not in ref else ""
        raise UsageError(
            f"{ref!r} is not a registry reference{hint}: write host[:port]/repository[:tag] or …@sha256:<hex>."
        )
    registry = match["registry"]
    # Docker's rule: the first component is a host only if it looks like one, so "team/model" is refused
    # rather than sent to a host called "team".
    if not (registry.startswith("[") or "." in registry or ":" in registry or registry == "localhost"):
        raise UsageError(
            f"{ref!r} names no registry host: write host[:port]/repository[:tag], e.g. 127.0.0.1:5000/{ref}."
        )
    digest = match["digest"]
    if digest is not None and not DIGEST.match(digest):
        raise UsageError(f"{digest!r} is not a sha256 digest: write sha256: followed by 64 lowercase hex digits.")
    return Reference(registry, match["repository"], match["tag"], digest)
