"""A small in-memory FHIR search responder for pytest-httpx callbacks.

It answers `metadata`, reads (`[type]/[id]`), type searches by `_id`, `patient`, `code` and
`identifier` (comma lists are ORs) with `_count`/`_offset` paging, and `POST [type]/_search`.
Switches make it refuse id lists or POST, so the pull's fallbacks can be exercised; it records
every request it saw.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import httpx

BASE = "https://fhir.example.org/r4"


def outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def bundle(
    resources: list[dict[str, Any]],
    total: int | None = None,
    next_url: str | None = None,
    extra_entries: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]
        + (extra_entries or []),
        "link": [{"relation": "next", "url": next_url}] if next_url else [],
    }
    if total is not None:
        result["total"] = total
    return result


class FakeFhirServer:
    def __init__(self, resources: list[dict[str, Any]], base: str = BASE) -> None:
        self.base = base
        self.resources = resources
        self.refuse_lists = False  # 400 for a comma in patient / _id on GET
        self.refuse_post = False  # 405 for POST _search
        self.require_patient = False  # 400 for a clinical search without patient or _id
        self.expire_next_links = 0  # answer that many next-page requests 410 Gone
        self.redirects: dict[str, str] = {}  # Patient read of a merged id -> the survivor
        self.seen: list[httpx.Request] = []
        self.capability: dict[str, Any] = {
            "resourceType": "CapabilityStatement",
            "fhirVersion": "4.0.1",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = str(request.url).split("?")[0][len(self.base) + 1 :]
        if path == "metadata":
            return httpx.Response(200, json=self.capability)
        if path.startswith("."):
            return httpx.Response(404, json=outcome("not-found", path))
        params = dict(request.url.params.multi_items())
        if path.startswith("Patient/") and path[8:] in self.redirects:
            location = f"{self.base}/Patient/{self.redirects[path[8:]]}"
            return httpx.Response(301, headers={"Location": location})
        if "/" in path and not path.endswith("/_search"):
            return self._read(*path.split("/", 1))
        clinical = path not in ("Patient", "Medication", "Group")
        if self.require_patient and clinical and not {"patient", "_id"} & set(params):
            return httpx.Response(400, json=outcome("required", "a patient is required"))
        if "_offset" in params and self.expire_next_links:
            self.expire_next_links -= 1
            return httpx.Response(410, json=outcome("expired", "search results expired"))
        if path.endswith("/_search"):
            if self.refuse_post:
                return httpx.Response(405, json=outcome("not-supported", "POST search"))
            params.update(parse_qsl(request.content.decode()))
            path = path.removesuffix("/_search")
        elif self._refuses(params):
            return httpx.Response(400, json=outcome("not-supported", "lists are not supported"))
        return httpx.Response(200, json=self._search(path, params))

    def _read(self, resource_type: str, resource_id: str) -> httpx.Response:
        for resource in self.resources:
            if (resource["resourceType"], resource["id"]) == (resource_type, resource_id):
                return httpx.Response(200, json=resource)
        return httpx.Response(404, json=outcome("not-found", f"{resource_type}/{resource_id}"))

    def _refuses(self, params: dict[str, str]) -> bool:
        # Only the client's own lists: the server accepts the next links it generated.
        ids = params.get("patient", params.get("_id", ""))
        return self.refuse_lists and "," in ids and "_offset" not in params

    def _search(self, resource_type: str, params: dict[str, str]) -> dict[str, Any]:
        hits = [r for r in self.resources if r["resourceType"] == resource_type]
        if "_id" in params:
            hits = [r for r in hits if r["id"] in params["_id"].split(",")]
        if "patient" in params:
            wanted = {f"Patient/{p}" for p in params["patient"].split(",")}
            hits = [r for r in hits if r.get("subject", {}).get("reference") in wanted]
        if "code" in params:
            tokens = set(params["code"].split(","))
            hits = [r for r in hits if tokens & set(_tokens(r))]
        if "identifier" in params:
            wanted_identifiers = set(params["identifier"].split(","))
            hits = [r for r in hits if wanted_identifiers & set(_identifiers(r))]
        count, offset = int(params.get("_count", 20)), int(params.get("_offset", 0))
        next_url = None
        if offset + count < len(hits):
            query = {k: v for k, v in params.items() if k != "_offset"} | {
                "_offset": offset + count
            }
            next_url = str(httpx.URL(f"{self.base}/{resource_type}", params=query))
        return bundle(hits[offset : offset + count], total=len(hits), next_url=next_url)

    def requests_to(self, resource_type: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.path.split("/")[-1] in (resource_type, "_search")
                and resource_type in r.url.path]  # fmt: skip


def _identifiers(resource: dict[str, Any]) -> list[str]:
    return [f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier", [])]


def _tokens(resource: dict[str, Any]) -> list[str]:
    codings = (resource.get("code") or {}).get("coding", [])
    return [f"{c['system']}|{c['code']}" for c in codings]
