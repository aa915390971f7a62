from datetime import date
from zoneinfo import ZoneInfo

import pytest

from fhir_hcc.dates import FhirDate, days_between, months, parse_date


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1999-08-09", FhirDate(date(1999, 8, 9))),
        ("1999-08-09T23:30:00+08:00", FhirDate(date(1999, 8, 9))),
        ("1999-08-09T00:10:00-05:00", FhirDate(date(1999, 8, 9))),
        ("1999-08-09T12:00:00.123Z", FhirDate(date(1999, 8, 9))),
        ("1996-05", FhirDate(date(1996, 5, 15), "month")),
        ("1996", FhirDate(date(1996, 7, 1), "year")),
    ],
)
def test_local_calendar_date_as_written(text: str, expected: FhirDate) -> None:
    assert parse_date(text) == expected


def test_site_timezone_converts_offsets_but_not_plain_dates() -> None:
    hong_kong = ZoneInfo("Asia/Hong_Kong")
    assert parse_date("1999-08-09T20:00:00Z", hong_kong).day == date(1999, 8, 10)
    assert parse_date("1999-08-09T20:00:00+08:00", hong_kong).day == date(1999, 8, 9)
    assert parse_date("1999-08-09", hong_kong).day == date(1999, 8, 9)
    assert parse_date("1996-05", hong_kong).precision == "month"


@pytest.mark.parametrize("text", ["", "abc", "19990809", "1999-13-01", "1999-02-30", "99-01-01"])
def test_invalid_dates_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


def test_imputed_flag_and_text() -> None:
    assert not parse_date("2001-02-03").imputed
    partial = parse_date("2001-02")
    assert partial.imputed and "imputed from month" in str(partial)


def test_days_and_months() -> None:
    assert days_between(parse_date("2000-01-01"), parse_date("2000-03-01")) == 60
    assert days_between(date(2000, 1, 1), date(1999, 12, 31)) == -1
    assert months(30) == pytest.approx(30 / 30.4375)
    assert months(3653) == pytest.approx(120.0164, abs=1e-4)
