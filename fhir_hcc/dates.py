"""FHIR `date` / `dateTime` values as local calendar dates that keep their precision.

The calendar date that counts is the one written in the value's own offset (the treating site's
local date), unless a site time zone is configured, in which case offsets are converted to it.
Partial dates ("1996", "1996-05") are imputed (year -> 1 July, month -> day 15) and keep their
precision so that callers can flag them and refuse them where day precision matters.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from msgspec import Struct

from fhir_hcc.contract import months as months  # the time unit, re-exported for the builder

Precision = Literal["year", "month", "day"]


class FhirDate(Struct, frozen=True, order=True, gc=False):  # made for every date read
    day: date
    precision: Precision = "day"

    @property
    def imputed(self) -> bool:
        return self.precision != "day"

    def iso(self) -> str:
        return self.day.isoformat()

    def __str__(self) -> str:
        return self.iso() if not self.imputed else f"{self.iso()} (imputed from {self.precision})"


def parse_date(text: str, site_tz: ZoneInfo | None = None) -> FhirDate:
    """Parse a FHIR date/dateTime/instant; raise ValueError when it is not one."""
    if site_tz is None:
        # Only the date part counts; slicing first lets datetimes of one day share a cache entry.
        if len(text) > 10 and text[10] == "T":
            return _parse_local(text[:10])
        return _parse_local(text)
    return _parse_in_zone(text, site_tz)


@lru_cache(maxsize=65536)
def _parse_local(text: str) -> FhirDate:
    length = len(text)
    if length == 4:
        return FhirDate(date(int(text), 7, 1), "year")
    if length == 7 and text[4] == "-":
        return FhirDate(date(int(text[:4]), int(text[5:7]), 15), "month")
    if length == 10:
        if text[4] != "-" or text[7] != "-":
            raise ValueError(f"not a FHIR date: {text!r}")
        return FhirDate(date(int(text[:4]), int(text[5:7]), int(text[8:10])))
    raise ValueError(f"not a FHIR date: {text!r}")


@lru_cache(maxsize=65536)
def _parse_in_zone(text: str, site_tz: ZoneInfo) -> FhirDate:
    if len(text) <= 10 or text[10] != "T":
        return _parse_local(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return _parse_local(text)
    return FhirDate(moment.astimezone(site_tz).date())


def days_between(start: FhirDate | date, end: FhirDate | date) -> int:
    start_day = start.day if isinstance(start, FhirDate) else start
    end_day = end.day if isinstance(end, FhirDate) else end
    return (end_day - start_day).days
