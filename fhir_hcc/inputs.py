"""Which source a user names: a folder or file of FHIR data, or a FHIR server's base URL.

It sits above both kinds of source, so that `sources` (files) and `server` never import each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fhir_hcc.sources import FileSource, Source


def is_server_url(spec: object) -> bool:
    return isinstance(spec, str | Path) and str(spec).startswith(("http://", "https://"))


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def is_uri(spec: str | Path) -> bool:
    """A URI with a scheme (`s3a://`, `abfss://`, `dbfs:/`, `file:/`, ...), not a local path: a
    location only Spark (Hadoop's file systems) reads and writes."""
    return isinstance(spec, str) and _SCHEME.match(spec) is not None


def open_source(spec: str | Path | Source, **server_options: Any) -> Source:
    """A Source for a path, an http(s) FHIR base URL, or an existing Source object."""
    if not isinstance(spec, str | Path):
        return spec
    if is_server_url(spec):
        from fhir_hcc.server import open_server_source

        return open_server_source(str(spec), **server_options)
    return FileSource(spec)
