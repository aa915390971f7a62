"""The progress a long read of files shows: lines when stderr is not a terminal."""

import io

from fhir_hcc.progress import SHOWN_FROM_BYTES, ReadingProgress


def test_lines_at_most_every_interval_and_at_the_end() -> None:
    stream = io.StringIO()
    show = ReadingProgress(stream, interval=3600)
    total = 4 * SHOWN_FROM_BYTES
    for done in range(SHOWN_FROM_BYTES, total + 1, SHOWN_FROM_BYTES):
        show(done, total)
    assert stream.getvalue().splitlines() == [
        "fhir-hcc: reading: 64 of 256 MB (25%)",
        "fhir-hcc: reading: 256 of 256 MB (100%)",
    ]


def test_small_inputs_show_nothing() -> None:
    stream = io.StringIO()
    ReadingProgress(stream, interval=0)(1000, 2000)
    assert stream.getvalue() == ""
