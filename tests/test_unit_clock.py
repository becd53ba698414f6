"""SOURCE_DATE_EPOCH handling (mlpack/clock.py)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mlpack import clock
from mlpack.errors import UsageError


def test_unset_or_empty_means_not_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert clock.source_date_epoch() is None and clock.reproducible() is False
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
    assert clock.source_date_epoch() is None and clock.reproducible() is False


def test_the_epoch_fixes_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert clock.source_date_epoch() == 1700000000 and clock.reproducible() is True
    assert clock.created() == "2023-11-14T22:13:20Z"


def test_iso_is_utc_with_a_z() -> None:
    assert clock.iso(0) == "1970-01-01T00:00:00Z"


def test_created_without_the_epoch_is_now_to_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = int(dt.datetime.now(dt.UTC).timestamp())
    created = clock.created()
    after = int(dt.datetime.now(dt.UTC).timestamp())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)
    assert clock.iso(before) <= created <= clock.iso(after)


@pytest.mark.parametrize("value", ["yesterday", "1.5", "0x10"])
def test_a_bad_epoch_is_refused_in_one_sentence(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(UsageError) as caught:
        clock.created()
    assert caught.value.message == f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {value!r}."
