"""`ServerSource`: a FHIR server as a cohort source, pulled to NDJSON and then read as files.

Reading what was pulled through the same NDJSON reader as a directory source keeps the mappers
identical for both, and streaming from disk keeps memory bounded.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fhir_hcc.server.caselist import Population
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.progress import Progress
from fhir_hcc.server.puller import pull
from fhir_hcc.sources import Item, ProblemSink, read_ndjson


class ServerSource:
    """Pulls the cohort's resources from `base_url` into `workdir` (a temporary folder if None);
    `population` is a case list (else the patients found by the mapping codes)."""

    def __init__(
        self,
        base_url: str,
        search_codes: Mapping[str, Sequence[tuple[str, str]]],
        options: ClientOptions,
        workdir: Path | None = None,
        progress: Progress | None = None,
        population: Population | None = None,
    ) -> None:
        self.base_url = base_url
        self.search_codes = search_codes
        self.options = options
        self.workdir = workdir
        self.progress = progress
        self.population = population
        self.manifest: dict[str, Any] | None = None  # set once a pull has finished

    @property
    def case_list(self) -> dict[str, Any] | None:
        """How the case list resolved (counts, for flow.json's `input`), once pulled."""
        if self.manifest is None or self.population is None:
            return None
        found = self.manifest["population"]
        return {
            "kind": found["kind"],
            "entries": found["entries"],
            "patients": found["patients"],
            "unknown": len(found["unknownLines"]),
            "ambiguous": len(found["ambiguousLines"]),
            "bad_lines": len(found["badLines"]),
            "repeated_lines": len(found["repeatedLines"]),
            "merged": found["merged"],
            "not_on_server": len(self.manifest["missingPatients"]),
        }

    def __repr__(self) -> str:
        return f"ServerSource({self.base_url!r})"

    def read(self, report: ProblemSink) -> Iterator[Item]:
        with self._directory() as directory:
            self.manifest = asyncio.run(
                pull(
                    self.base_url,
                    self.search_codes,
                    self.options,
                    directory,
                    population=self.population,
                    progress=self.progress,
                )
            )
            for name in self.manifest["files"].values():
                yield from read_ndjson(directory / name, report)

    @contextmanager
    def _directory(self) -> Iterator[Path]:
        if self.workdir is not None:
            yield self.workdir
            return
        with tempfile.TemporaryDirectory(prefix="fhir-hcc-pull-") as temporary:
            yield Path(temporary)


def open_server_source(
    base_url: str,
    options: ClientOptions | None = None,
    search_codes: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    population: Population | None = None,
) -> ServerSource:
    """A ServerSource with the shipped mappings' codes and options from FHIR_HCC_* variables."""
    if search_codes is None:
        from fhir_hcc.mappings import load_mappings

        search_codes = load_mappings().search_codes()
    return ServerSource(
        base_url, search_codes, options or ClientOptions.from_env(), workdir, progress, population
    )
