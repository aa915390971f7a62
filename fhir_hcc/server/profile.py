"""Server profiles: what a vendor's FHIR API allows a pull to do, kept as data with sources.

A profile (`fhir_hcc/server/profiles/<name>.toml`) states whether clinical searches may go
without a patient (population code search), whether patient and `_id` lists and POST `_search`
are accepted, the `_count` maximum, whether `Bundle.total` is trustworthy, whether `_lastUpdated`
works and with which prefix, headers to send (values from environment variables), a Retry-After
cap, per-type rules (required parameters, a `_count` cap, types never searched) and Bulk Data
rules (levels offered, types an export leaves out). Every rule carries its source.

The profile is chosen by `--profile NAME` (a shipped profile) or `--profile FILE` (a site file,
usually `extends = "epic"` with a few rules changed; `FHIR_HCC_PROFILE` likewise), else from the
CapabilityStatement (software name, publisher, implementation), else `generic`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_hcc.errors import ConfigError
from fhir_hcc.fhir.capability import EXPORT_LEVELS, identity
from fhir_hcc.fhir.types import RESOURCE_TYPES

SHIPPED_PROFILES = Path(__file__).parent / "profiles"
DEFAULT = "generic"
MATCH_FIELDS = ("software", "publisher", "implementation")
PREFIXES = frozenset({"gt", "ge"})


@dataclass(frozen=True)
class Rule:
    """One statement of a profile, with where it comes from."""

    value: Any
    source: str


@dataclass(frozen=True)
class TypeRules:
    required: tuple[tuple[str, ...], ...] = ()  # a search must carry one of these sets
    max_count: int = 0  # 0: the profile's search.max_count
    search: bool = True  # False: never searched (e.g. only contained in other resources)
    source: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    rules: Mapping[str, Rule]  # "search.population", "bulk.levels", ...
    match: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    match_source: str = ""
    headers: Mapping[str, Rule] = field(default_factory=dict)  # header -> Rule(env var name)
    types: Mapping[str, TypeRules] = field(default_factory=dict)
    origin: str = ""  # the file it was read from

    def value(self, key: str) -> Any:
        return self.rules[key].value

    @property
    def population_search(self) -> bool:
        return bool(self.value("search.population"))

    @property
    def patient_lists(self) -> bool:
        return bool(self.value("search.patient_lists"))

    @property
    def id_lists(self) -> bool:
        return bool(self.value("search.id_lists"))

    @property
    def post_search(self) -> bool:
        return bool(self.value("search.post"))

    @property
    def trust_total(self) -> bool:
        return bool(self.value("search.total"))

    @property
    def last_updated(self) -> bool:
        return bool(self.value("search.last_updated"))

    @property
    def last_updated_prefix(self) -> str:
        return str(self.value("search.last_updated_prefix"))

    @property
    def bulk_levels(self) -> tuple[str, ...]:
        return tuple(self.value("bulk.levels"))

    @property
    def unexported(self) -> tuple[str, ...]:
        return tuple(self.value("bulk.unexported"))

    @property
    def retry_after_cap(self) -> float | None:
        rule = self.rules.get("client.retry_after_cap")
        return float(rule.value) if rule is not None else None

    def count(self, resource_type: str, page_size: int) -> int:
        """The `_count` to send: the page size, capped by the profile and the type's rule."""
        caps = [page_size, self.value("search.max_count"), self.type(resource_type).max_count]
        return min(cap for cap in caps if cap)

    def type(self, resource_type: str) -> TypeRules:
        return self.types.get(resource_type, TypeRules())

    def header_values(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Headers whose environment variables are set (values never logged)."""
        env = os.environ if environ is None else environ
        return {name: env[rule.value] for name, rule in self.headers.items() if env.get(rule.value)}

    def matches(self, capability: Mapping[str, Any]) -> str | None:
        """How the CapabilityStatement names this profile's server, or None."""
        found = identity(capability)
        for key in MATCH_FIELDS:
            for wanted in self.match.get(key, ()):
                text = found[key]
                hit = (
                    wanted.lower() in text.lower()
                    if key == "implementation"
                    else (text.lower() == wanted.lower())
                )
                if hit:
                    return f"CapabilityStatement {key} {text!r}"
        return None


# -- reading --------------------------------------------------------------------------------
# Every rule a profile has, after `extends`, with the type of its value.
RULE_KINDS: dict[str, type | tuple[type, ...]] = {
    "search.population": bool,
    "search.patient_lists": bool,
    "search.id_lists": bool,
    "search.post": bool,
    "search.max_count": int,
    "search.total": bool,
    "search.last_updated": bool,
    "search.last_updated_prefix": str,
    "bulk.levels": list,
    "bulk.unexported": list,
    "client.retry_after_cap": (int, float),
}
REQUIRED_RULES = frozenset(RULE_KINDS) - {"client.retry_after_cap"}


def shipped_names() -> list[str]:
    return sorted(path.stem for path in SHIPPED_PROFILES.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or a site file (which may `extends` a shipped one)."""
    path = _locate(name_or_path)
    data = _read(path)
    base = data.pop("extends", None)
    if base is not None:
        parent = load_profile(_shipped(str(base), path))
        data = _merged(_raw(parent), data)
    profile = _profile(data, path)
    missing = sorted(REQUIRED_RULES - set(profile.rules))
    if missing:
        raise ConfigError(f"{path}: profile {profile.name!r} lacks rules: {', '.join(missing)}")
    return profile


def choose_profile(
    capability: Mapping[str, Any], requested: str | Path | None = None
) -> tuple[Profile, str]:
    """The profile to use and why: as requested, else the first shipped profile whose match
    rules the CapabilityStatement meets, else `generic`."""
    if requested:
        return load_profile(requested), f"--profile {requested}"
    for name in shipped_names():
        profile = load_profile(name)
        reason = profile.matches(capability)
        if reason is not None:
            return profile, reason
    return load_profile(DEFAULT), "no shipped profile matches the CapabilityStatement"


def _locate(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: no such profile file")
        return path
    return _shipped(text, None)


def _shipped(name: str, referrer: Path | None) -> Path:
    path = SHIPPED_PROFILES / f"{name}.toml"
    if not path.is_file():
        where = f"{referrer}: " if referrer else ""
        raise ConfigError(
            f"{where}no server profile {name!r}; shipped: {', '.join(shipped_names())} "
            "(or give a site profile file)"
        )
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the profile: {error}") from None


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` over `base`, table by table (a rule given replaces the base's rule whole)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "match":
            merged[key] = merged[key] | value
        else:
            merged[key] = value
    return merged


def _raw(profile: Profile) -> dict[str, Any]:
    """A profile back as the tables it was read from (for `extends`)."""
    raw: dict[str, Any] = {"name": profile.name, "description": profile.description}
    if profile.match:
        raw["match"] = {**profile.match, "source": profile.match_source}
    for key, rule in profile.rules.items():
        table, name = key.split(".")
        raw.setdefault(table, {})[name] = {"value": rule.value, "source": rule.source}
    raw["headers"] = {
        name: {"env": rule.value, "source": rule.source} for name, rule in profile.headers.items()
    }
    raw["types"] = {
        name: {
            "required": [list(group) for group in rules.required],
            "max_count": rules.max_count,
            "search": rules.search,
            "source": rules.source,
        }
        for name, rules in profile.types.items()
    }
    return raw


def _profile(data: dict[str, Any], path: Path) -> Profile:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    name, description = data.get("name"), data.get("description", "")
    if not isinstance(name, str) or not name:
        raise fail("a profile needs a name")
    rules: dict[str, Rule] = {}
    for table in ("search", "bulk", "client"):
        for key, entry in (data.get(table) or {}).items():
            full = f"{table}.{key}"
            if full not in RULE_KINDS:
                raise fail(f"unknown rule {full} (known: {', '.join(sorted(RULE_KINDS))})")
            rules[full] = Rule(_value(entry, full, fail), _source(entry, full, fail))
    _check_values(rules, fail)
    match = data.get("match") or {}
    unknown = set(match) - {*MATCH_FIELDS, "source"}
    if unknown:
        raise fail(f"unknown match fields: {', '.join(sorted(unknown))}")
    if any(key in match for key in MATCH_FIELDS) and not match.get("source"):
        raise fail("[match] needs a source")
    headers = {
        header: Rule(str(entry.get("env", "")), _source(entry, f"headers.{header}", fail))
        for header, entry in (data.get("headers") or {}).items()
    }
    if any(not rule.value for rule in headers.values()):
        raise fail("a header names the environment variable of its value (env = ...)")
    return Profile(
        name,
        str(description),
        rules,
        {key: tuple(str(v) for v in match.get(key, ())) for key in MATCH_FIELDS if key in match},
        str(match.get("source", "")),
        headers,
        {
            resource_type: _type_rules(resource_type, entry, fail)
            for resource_type, entry in (data.get("types") or {}).items()
        },
        str(path),
    )


def _value(entry: Any, key: str, fail: Any) -> Any:
    if not isinstance(entry, dict) or "value" not in entry:
        raise fail(f"{key} needs a value and a source")
    value = entry["value"]
    kind = RULE_KINDS[key]
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise fail(f"{key} = {value!r} is not a {getattr(kind, '__name__', 'number')}")
    return value


def _source(entry: Any, key: str, fail: Any) -> str:
    source = entry.get("source") if isinstance(entry, dict) else None
    if not isinstance(source, str) or not source.strip():
        raise fail(f"{key} needs a source (where the rule comes from)")
    return source


def _check_values(rules: dict[str, Rule], fail: Any) -> None:
    prefix = rules.get("search.last_updated_prefix")
    if prefix is not None and prefix.value not in PREFIXES:
        raise fail(f"search.last_updated_prefix must be one of {', '.join(sorted(PREFIXES))}")
    levels = rules.get("bulk.levels")
    if levels is not None and not set(levels.value) <= set(EXPORT_LEVELS):
        raise fail(f"bulk.levels must be among {', '.join(EXPORT_LEVELS)}")
    unexported = rules.get("bulk.unexported")
    if unexported is not None and not set(unexported.value) <= RESOURCE_TYPES:
        raise fail("bulk.unexported names a type that is not a FHIR R4 resource type")


def _type_rules(resource_type: str, entry: Any, fail: Any) -> TypeRules:
    if resource_type not in RESOURCE_TYPES:
        raise fail(f"[types.{resource_type}] is not a FHIR R4 resource type")
    if not isinstance(entry, dict):
        raise fail(f"[types.{resource_type}] must be a table")
    unknown = set(entry) - {"required", "max_count", "search", "source"}
    if unknown:
        raise fail(f"[types.{resource_type}]: unknown keys {', '.join(sorted(unknown))}")
    required = entry.get("required", [])
    if not all(isinstance(group, list) and group for group in required):
        raise fail(f"[types.{resource_type}] required is a list of parameter lists")
    return TypeRules(
        tuple(tuple(str(p) for p in group) for group in required),
        int(entry.get("max_count", 0)),
        bool(entry.get("search", True)),
        _source(entry, f"types.{resource_type}", fail),
    )
