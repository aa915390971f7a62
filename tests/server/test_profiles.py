"""Server profiles as data: every rule with its source, chosen from the CapabilityStatement or
by name, overridable by a site file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_hcc.errors import ConfigError
from fhir_hcc.server.profile import (
    REQUIRED_RULES,
    choose_profile,
    load_profile,
    shipped_names,
)


def test_shipped_profiles_state_every_rule_with_a_source():
    assert {"generic", "epic", "oracle-health", "hapi"} <= set(shipped_names())
    for name in shipped_names():
        profile = load_profile(name)
        assert set(profile.rules) >= REQUIRED_RULES, name
        sources = [rule.source for rule in profile.rules.values()]
        sources += [rule.source for rule in profile.headers.values()]
        sources += [rules.source for rules in profile.types.values()]
        assert all(source.strip() for source in sources), name
        assert name == "generic" or profile.match_source, name


@pytest.mark.parametrize(
    ("capability", "chosen"),
    [
        ({"software": {"name": "Epic", "version": "May 2026"}}, "epic"),
        ({"publisher": "Cerner"}, "oracle-health"),
        ({"publisher": "Oracle Health"}, "oracle-health"),
        ({"software": {"name": "HAPI FHIR Server", "version": "8.0.0"}}, "hapi"),
        ({"software": {"name": "SEKMET FHIR R4 Tester"}, "publisher": "SEKMET"}, "generic"),
        ({}, "generic"),
    ],
)
def test_the_capability_statement_chooses_the_profile(capability, chosen):
    profile, reason = choose_profile({"resourceType": "CapabilityStatement", **capability})
    assert profile.name == chosen
    assert reason.startswith("CapabilityStatement ") == (chosen != "generic"), reason


def test_a_name_overrides_the_capability_statement_and_an_unknown_one_is_refused():
    profile, reason = choose_profile({"software": {"name": "Epic"}}, "generic")
    assert (profile.name, reason) == ("generic", "--profile generic")
    with pytest.raises(ConfigError, match=r"no server profile 'cerner'; shipped: epic, generic"):
        load_profile("cerner")


def test_rules_of_epic_and_oracle():
    epic, oracle = load_profile("epic"), load_profile("oracle-health")
    assert not epic.population_search and not epic.patient_lists and not epic.post_search
    assert (epic.count("Observation", 500), epic.count("Condition", 20)) == (50, 20)
    assert not epic.trust_total and not epic.last_updated
    assert epic.bulk_levels == ("Group",) and epic.unexported == ("Medication",)
    assert epic.type("Observation").required == (("code",), ("category",))
    assert oracle.count("Observation", 500) == 200 and oracle.last_updated_prefix == "ge"
    assert not oracle.type("Medication").search
    assert oracle.unexported == ("MedicationAdministration", "Medication")
    assert oracle.retry_after_cap == 300
    generic = load_profile("generic")
    assert generic.count("Observation", 500) == 500 and generic.retry_after_cap is None


def test_headers_come_from_the_environment_only_when_set():
    epic = load_profile("epic")
    assert epic.header_values({}) == {}
    assert epic.header_values({"FHIR_HCC_EPIC_CLIENT_ID": "abc"}) == {"Epic-Client-ID": "abc"}


def test_a_site_file_extends_a_shipped_profile(tmp_path: Path):
    site = tmp_path / "our-epic.toml"
    site.write_text(
        'name = "our-epic"\nextends = "epic"\n'
        '[search.max_count]\nvalue = 100\nsource = "our Epic team, ticket 4711"\n'
        '[types.DiagnosticReport]\nsearch = false\nsource = "not licensed here"\n'
    )
    profile, reason = choose_profile({"publisher": "Cerner"}, str(site))
    assert (profile.name, reason) == ("our-epic", f"--profile {site}")
    assert profile.count("Observation", 500) == 100
    assert profile.rules["search.max_count"].source == "our Epic team, ticket 4711"
    assert not profile.patient_lists  # the rest is Epic's
    assert not profile.type("DiagnosticReport").search
    assert profile.type("Observation").required  # Epic's type rules stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[search.max_count]\nvalue = 100\n', "search.max_count needs a source"),
        ('[search.population]\nvalue = "no"\nsource = "x"\n', "is not a bool"),
        ('[search.speed]\nvalue = 1\nsource = "x"\n', "unknown rule search.speed"),
        ('[search.last_updated_prefix]\nvalue = "lt"\nsource = "x"\n', "must be one of ge, gt"),
        ('[bulk.unexported]\nvalue = ["Medicine"]\nsource = "x"\n', "not a FHIR R4 resource"),
        ('[types.Medicine]\nsearch = false\nsource = "x"\n', "is not a FHIR R4 resource type"),
        ('[headers.X-Site]\nsource = "x"\n', "names the environment variable"),
    ],
)  # fmt: skip
def test_a_bad_site_file_names_the_file_and_the_rule(tmp_path: Path, text: str, message: str):
    site = tmp_path / "site.toml"
    site.write_text(f'name = "site"\nextends = "generic"\n{text}')
    with pytest.raises(ConfigError, match=message) as caught:
        load_profile(site)
    assert str(site) in str(caught.value)


def test_a_profile_without_extends_must_state_every_rule(tmp_path: Path):
    site = tmp_path / "bare.toml"
    site.write_text('name = "bare"\n[search.population]\nvalue = true\nsource = "x"\n')
    with pytest.raises(ConfigError, match=r"lacks rules: bulk\.levels"):
        load_profile(site)
