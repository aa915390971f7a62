"""Which source a user names: a folder or file of FHIR data, or a FHIR server's base URL.

It sits above both kinds of source, so that `sources` (files) and `server` never import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_hcc.sources import FileSource, Source


def is_server_url(spec: str | Path) -> bool:
    return str(spec).startswith(("http://", "https://"))


def open_source(spec: str | Path | Source, **server_options: Any) -> Source:
    """A Source for a path, an http(s) FHIR base URL, or an existing Source object."""
    if not isinstance(spec, str | Path):
        return spec
    if is_server_url(spec):
        from fhir_hcc.server import open_server_source

        return open_server_source(str(spec), **server_options)
    return FileSource(spec)
