"""The one place that reads SOURCE_DATE_EPOCH: reproducible builds take their timestamps from it and leave
wall-clock measurements out, so the same inputs give the same bytes."""

from __future__ import annotations

import datetime as dt
import os

from mlpack.errors import UsageError


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH as seconds, or None when unset (reproducible-builds.org's convention)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {value!r}.") from None


def reproducible() -> bool:
    """True when builds must leave out anything that depends on the clock."""
    return source_date_epoch() is not None


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def created() -> str:
    """A timestamp for 'created' fields: SOURCE_DATE_EPOCH when set, else now, to the second."""
    epoch = source_date_epoch()
    return iso(epoch if epoch is not None else int(dt.datetime.now(dt.UTC).timestamp()))
