"""Mapping files (code lists and text patterns kept as data in `mappings/`) and the matcher.

A concept file lists codes and text patterns, each with a class (for example `hcc.toml`:
`definite`, `not_hcc`, ...). A site may layer its own directory over the shipped one: files with
the same name add rows (their patterns are tried first). Matching is on the pair (canonical
system, normalised code); text patterns are a fallback used only when no coding matches, and every
match records which path it took so that each classification can be audited.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fhir_hcc.errors import ConfigError
from fhir_hcc.fhir.datatypes import CodeableConcept, Coding

# The top-level mappings/ through the package's link to it; a wheel holds a copy there.
SHIPPED_MAPPINGS = (Path(__file__).parent / "shipped_mappings").resolve()
# Files that configure matching rather than list a clinical concept.
_META_FILES = {"systems", "extensions"}
# Real exports repeat a few thousand distinct codings and displays millions of times: each is
# normalised and classified once, in caches cleared when they grow past this many entries.
_CACHE_SIZE = 200_000
_CACHED_TEXT = 200  # characters: longer texts are matched each time, not kept
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Match:
    """One classification of a coding or text, with the path that produced it."""

    concept: str
    cls: str
    system: str
    code: str
    display: str
    via: str  # "code" or "text"
    status: str

    def describe(self) -> str:
        if self.via == "text":
            return f"{self.concept}.{self.cls} by text pattern"
        return f"{self.concept}.{self.cls} by {self.system}|{self.code}"


@dataclass(slots=True)
class _System:
    canonical: str
    normalise: str


@dataclass(slots=True)
class _Concept:
    name: str
    exact: dict[tuple[str, str], Match] = field(default_factory=dict)
    prefixes: list[tuple[str, str, Match]] = field(default_factory=list)
    patterns: list[tuple[re.Pattern[str], Match]] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)


_ICDO3 = re.compile(r"^M?(\d{4})[/\-]?(\d)$", re.IGNORECASE)


class Mappings:
    """All mapping files of one run, indexed for fast matching."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = tuple(directories)
        self._systems: dict[str, _System] = {}
        self._concepts: dict[str, _Concept] = {}
        self.extensions: dict[str, frozenset[str]] = {}
        self._clear_caches()
        for directory in self.directories:
            self._load_directory(directory)

    def _clear_caches(self) -> None:
        self._normalised: dict[tuple[str, str], tuple[str, str]] = {}
        self._by_coding: dict[str, dict[Coding, Match | None]] = {}
        self._by_text: dict[str, dict[str, tuple[int, Match] | None]] = {}
        self._indexes: dict[tuple[str, ...], dict[tuple[str, str], list[Match]]] = {}
        # Per concept (or mapper's reading) and spelling of a code: classify, read_code.
        self._by_spelling: dict[tuple[Any, ...], Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes and Spark executors without what this one has cached.
        state = self.__dict__.copy()
        for name in ("_normalised", "_by_coding", "_by_text", "_by_spelling", "_indexes"):
            state[name] = {}
        return state

    # -- loading ---------------------------------------------------------------------------
    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: mapping directory not found")
        files = sorted(directory.glob("*.toml"))
        for path in files:
            if path.stem == "systems":
                self._load_systems(path, _read_toml(path))
        for path in files:
            data = _read_toml(path)
            if path.stem == "extensions":
                for key, urls in data.get("extensions", {}).items():
                    self.extensions[key] = self.extensions.get(key, frozenset()) | set(urls)
            elif path.stem not in _META_FILES:
                self._load_concept(path, data)

    def _load_systems(self, path: Path, data: dict[str, Any]) -> None:
        for row in data.get("systems", []):
            system = _System(_require(row, "canonical", path), row.get("normalise", "none"))
            for uri in (system.canonical, *row.get("aliases", [])):
                self._systems[uri] = system

    def _load_concept(self, path: Path, data: dict[str, Any]) -> None:
        name = data.get("concept", path.stem)
        concept = self._concepts.setdefault(name, _Concept(name))
        for key, value in data.items():
            if isinstance(value, dict) and key != "classes":
                concept.tables.setdefault(key, {}).update(value)
        for row in data.get("codes", []):
            self._add_code(concept, path, row)
        site_patterns = [self._pattern(name, path, row) for row in data.get("patterns", [])]
        concept.patterns[:0] = site_patterns  # a later (site) directory's patterns are tried first

    def _add_code(self, concept: _Concept, path: Path, row: dict[str, Any]) -> None:
        systems = row.get("system")
        code = _require(row, "code", path)
        for system_uri in [systems] if isinstance(systems, str) else systems or []:
            system = self._systems.get(system_uri)
            if system is None:
                raise ConfigError(
                    f"{path}: code {code}: system {system_uri} is not in systems.toml"
                )
            match = Match(
                concept.name,
                _require(row, "class", path),
                system.canonical,
                code,
                row.get("display", ""),
                "code",
                row.get("status", ""),
            )
            if code.endswith("*"):
                prefix = normalise_code(system.normalise, code[:-1])
                concept.prefixes.append((system.canonical, prefix, match))
            else:
                concept.exact[(system.canonical, normalise_code(system.normalise, code))] = match

    @staticmethod
    def _pattern(name: str, path: Path, row: dict[str, Any]) -> tuple[re.Pattern[str], Match]:
        regex = _require(row, "regex", path)
        try:
            compiled = re.compile(regex)
        except re.error as error:
            raise ConfigError(f"{path}: pattern {regex!r}: {error}") from None
        cls = _require(row, "class", path)
        return compiled, Match(name, cls, "", "", regex, "text", row.get("status", "rule"))

    # -- matching --------------------------------------------------------------------------
    def normalise(self, system: str | None, code: str | None) -> tuple[str, str]:
        """The (canonical system, normalised code) pair a coding is matched on."""
        key = (system or "", code or "")
        found = self._normalised.get(key)
        if found is None:
            if len(self._normalised) > _CACHE_SIZE:
                self._normalised.clear()
            found = self._normalised[key] = self._normalise(*key)
        return found

    def _normalise(self, system: str, code: str) -> tuple[str, str]:
        if not system or not code:
            return system, code
        known = self._systems.get(system) or self._systems.get(system.rstrip("/"))
        if known is None:
            return system, code.strip()
        return known.canonical, normalise_code(known.normalise, code)

    def match_coding(self, concept: str, coding: Coding) -> Match | None:
        cache = self._by_coding.get(concept)
        if cache is None or len(cache) > _CACHE_SIZE:
            cache = self._by_coding[concept] = {}
        try:
            return cache[coding]
        except KeyError:
            found = cache[coding] = self._match_coding(self._concept(concept), coding)
            return found

    def _match_coding(self, index: _Concept, coding: Coding) -> Match | None:
        key = self.normalise(coding.system, coding.code)
        found = index.exact.get(key)
        if found is not None:
            return found
        system, code = key
        for prefix_system, prefix, match in index.prefixes:
            if system == prefix_system and code.startswith(prefix):
                return match
        return None

    def match_codings(self, concept: str, codings: Iterable[Coding]) -> list[Match]:
        found = (self.match_coding(concept, coding) for coding in codings)
        return [match for match in found if match is not None]

    def match_text(self, concept: str, *texts: str | None) -> Match | None:
        """The first pattern (in file order) that any of `texts` matches."""
        best = None
        for text in texts:
            if text:
                found = self._first_pattern(concept, text)
                if found is not None and (best is None or found[0] < best[0]):
                    best = found
        return best[1] if best is not None else None

    def _first_pattern(self, concept: str, text: str) -> tuple[int, Match] | None:
        cache = self._by_text.get(concept)
        if cache is None or len(cache) > _CACHE_SIZE:
            cache = self._by_text[concept] = {}
        if len(text) > _CACHED_TEXT:  # free text (a report's conclusion) seldom repeats
            return self._match_patterns(concept, text)
        if text not in cache:
            cache[text] = self._match_patterns(concept, text)
        return cache[text]

    def _match_patterns(self, concept: str, text: str) -> tuple[int, Match] | None:
        patterns = self._concept(concept).patterns
        return next(
            ((i, match) for i, (pattern, match) in enumerate(patterns) if pattern.search(text)),
            None,
        )

    def classify(self, concept: str, value: CodeableConcept | None) -> tuple[Match, ...]:
        """Match a CodeableConcept: its codings first, its text and displays only as a fallback.

        The same concept is written the same way across an export: one lookup per CodeableConcept.
        """
        if value is None:
            return ()
        return self._per_spelling(concept, value, self._classify, concept, value)

    def read_code(
        self,
        value: CodeableConcept | None,
        reading: Callable[[CodeableConcept | None, Mappings], T],
    ) -> T:
        """What `reading` (a mapper's module-level classification of a code under several
        concepts, a function of the code and the mappings only) makes of a code, worked out
        once per spelling of the code, as `classify` is."""
        return self._per_spelling(reading, value, reading, value, self)

    def _per_spelling(
        self, what: object, value: CodeableConcept | None, work: Callable[..., T], *args: Any
    ) -> T:
        """`work(*args)`, kept per `what` and spelling of `value` (its text and codings); a value
        with a long text (free text seldom repeats) is worked out each time."""
        if value is not None and value.text and len(value.text) > _CACHED_TEXT:
            return work(*args)
        key = (what,) if value is None else (what, value.text, *value.coding)
        try:
            found: T = self._by_spelling[key]
        except KeyError:
            if len(self._by_spelling) > _CACHE_SIZE:
                self._by_spelling.clear()
            found = self._by_spelling[key] = work(*args)
        return found

    def _classify(self, concept: str, value: CodeableConcept) -> tuple[Match, ...]:
        matches = self.match_codings(concept, value.coding)
        if matches:
            return tuple(matches)
        text_match = self.match_text(
            concept, value.text, *(coding.display for coding in value.coding)
        )
        return (text_match,) if text_match else ()

    def table(self, concept: str, name: str) -> dict[str, Any]:
        return self._concept(concept).tables.get(name, {})

    def extension_urls(self, key: str) -> frozenset[str]:
        return self.extensions.get(key, frozenset())

    def codes(self, concept: str, *classes: str) -> list[tuple[str, str]]:
        """Exact (system, code) pairs of a concept's classes, in canonical spelling."""
        index = self._concept(concept)
        return [
            (match.system, match.code)
            for match in index.exact.values()
            if not classes or match.cls in classes
        ]

    def search_codes(self) -> dict[str, list[tuple[str, str]]]:
        """The codes a server pull searches for, by resource type (see fhir_hcc.server).

        A server matches a token search on the stored text, so each exact code is searched
        under every URI that systems.toml gives its system (canonical and aliases, site files
        included) and as written and normalised (an ICD code with and without its dot: C22.0
        and C220). Prefix rows (`C78*`) cannot be searched as tokens and are not.
        """
        observations = ("hepatitis_b", "afp", "pathology", "recurrence", "death")
        return {
            "Condition": self._spellings(
                self.codes("hcc", "definite", "unspecified_primary", "not_hcc")
            ),
            "Procedure": self._spellings(
                self.codes("resection") + self.codes("y90") + self.codes("transplant")
            ),
            "Observation": self._spellings(
                [pair for concept in observations for pair in self.codes(concept)]
            ),
            "MedicationAdministration": self._spellings(self.codes("chemotherapy")),
        }

    def _spellings(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        uris: dict[str, list[str]] = {}  # canonical -> every URI of that system, site files too
        for uri, system in self._systems.items():
            uris.setdefault(system.canonical, []).append(uri)
        spelled: set[tuple[str, str]] = set()
        for canonical, code in pairs:
            for spelling in {code, normalise_code(self._systems[canonical].normalise, code)}:
                spelled.update((uri, spelling) for uri in uris[canonical])
        return sorted(spelled)

    def index(self, concepts: tuple[str, ...]) -> dict[tuple[str, str], list[Match]]:
        """One (system, code) -> matches index over several concepts, for one-pass lookups
        (made once per set of concepts)."""
        found = self._indexes.get(concepts)
        if found is None:
            found = self._indexes[concepts] = {}
            for name in concepts:
                for key, match in self._concept(name).exact.items():
                    found.setdefault(key, []).append(match)
        return found

    def knows_system(self, uri: str) -> bool:
        """Whether systems.toml declares this URI (canonical or alias)."""
        return uri in self._systems

    def concepts(self) -> list[str]:
        return sorted(self._concepts)

    def _concept(self, name: str) -> _Concept:
        try:
            return self._concepts[name]
        except KeyError:
            raise ConfigError(f"no mapping file defines concept {name!r}") from None


def normalise_code(kind: str, code: str) -> str:
    """A code in the spelling it is matched in: `kind` is a system's `normalise` setting."""
    code = code.strip()
    if kind == "icd":
        return code.replace(".", "").upper()
    if kind == "upper":
        return code.upper()
    if kind == "icdo3":
        morphology = _ICDO3.match(code)
        return f"{morphology.group(1)}/{morphology.group(2)}" if morphology else code
    return code


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read mapping file: {error}") from None


def _require(row: dict[str, Any], key: str, path: Path) -> Any:
    if key not in row:
        raise ConfigError(f"{path}: a row lacks the required key {key!r}: {row}")
    return row[key]


def mapping_directories(extra: Sequence[str | Path] = ()) -> list[Path]:
    """The shipped mappings followed by site overrides (FHIR_HCC_MAPPINGS, then `extra`)."""
    site = os.environ.get("FHIR_HCC_MAPPINGS", "")
    directories = [SHIPPED_MAPPINGS, *(Path(p) for p in site.split(os.pathsep) if p)]
    return directories + [Path(p) for p in extra]


def load_mappings(extra: Sequence[str | Path] = ()) -> Mappings:
    return Mappings(mapping_directories(extra))
