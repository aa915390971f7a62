"""An EHR emulator: a proxy in front of a FHIR server that answers with Epic's or Oracle
Health's search rules, as `shared/reference/ehr-search-rules.md` writes them down.

It is written from those rules, not from fhir-hcc's server profiles, so a profile that says
something the vendor does not allow fails here. Both vendors:

- clinical searches (Condition, Procedure, Observation, Medication*, Encounter,
  DiagnosticReport) need `patient` (or `subject` or `_id`): 400 OperationOutcome otherwise;
- one patient per search: `patient=a,b` (and `_id` lists) refused with 400;
- a Patient search needs `_id` or `identifier` (one value); POST `_search` answers 405;
- no `Bundle.total`; next links are opaque cursors (`-pageContext`), followed as given or 410;
- the CapabilityStatement names the vendor (Epic: software.name; Oracle: publisher).

Epic: `_count` at most 50 (400 above); Observation needs `code` or `category`; no
`_lastUpdated` (400); Bulk Data only at Group level. Oracle Health: `_count` at most 200;
`_lastUpdated` and date prefixes only `ge`/`lt` with a time, never `_lastUpdated` with `date`;
Medication is not a resource of its own (404): the Medication a resource references is sent
contained in it instead; no MedicationStatement.

Run as a process (`EhrEmulator`, like the fault proxy); on SIGTERM it writes its counts
(requests per type, refusals per rule and type, headers seen) to `--stats`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import orjson

from integration.fault_proxy import (
    FORWARDED_HEADERS,
    ProxyProcess,
    Request,
    read_request,
    serve,
    write_response,
)

CLINICAL = frozenset(
    {
        "Condition", "Procedure", "Observation", "MedicationAdministration",
        "MedicationRequest", "MedicationStatement", "Encounter", "DiagnosticReport",
    }
)  # fmt: skip
PATIENT_KEYS = ("patient", "subject", "_id")
CURSOR = "-pageContext"
VENDORS = {
    "epic": {"software": {"name": "Epic", "version": "emulated"}, "publisher": "Epic"},
    "oracle": {"publisher": "Oracle Health", "software": {"name": "Millennium"}},
}
MAX_COUNT = {"epic": 50, "oracle": 200}
_TIMESTAMP = re.compile(r"(ge|lt)\d{4}-\d\d-\d\dT\d\d:\d\d")


class EhrEmulator(ProxyProcess):
    """Test-side handle: `EhrEmulator(upstream_origin, work_dir, vendor="epic")`."""

    module = "integration.ehr_emulator"


class Refusal(Exception):
    def __init__(self, status: int, rule: str, diagnostics: str, code: str = "processing") -> None:
        super().__init__(diagnostics)
        self.status, self.rule, self.code = status, rule, code


class _Emulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.upstream = args.upstream.rstrip("/")
        self.vendor: str = args.vendor
        self.client = httpx.AsyncClient(timeout=60)
        self.origin = ""
        self.injected: Counter[str] = Counter()  # what `serve` writes to --stats
        self.cursors: dict[str, str] = {}  # token -> upstream URL of the next page
        self.medications: dict[str, dict[str, Any]] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await read_request(reader):
                status, content = await self.answer(request)
                write_response(writer, status, content, {"Content-Type": "application/fhir+json"})
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def answer(self, request: Request) -> tuple[int, bytes]:
        method, target, headers, body = request
        path, _, query = target.partition("?")
        resource_path = path.split("/fhir/", 1)[-1] if "/fhir/" in path else ""
        resource_type = resource_path.split("/")[0]
        self.injected[f"requests {resource_type or 'base'}"] += 1
        if "epic-client-id" in headers:
            self.injected["header Epic-Client-ID"] += 1
        try:
            if resource_path == "metadata":
                return await self.metadata()
            params = parse_qsl(query, keep_blank_values=True)
            if method == "POST" and resource_path.endswith("/_search"):
                raise Refusal(405, "no POST _search", "POST _search is not supported")
            upstream_target = self.check(method, resource_path, params)
            return await self.forward(method, upstream_target or target, headers, body)
        except Refusal as refusal:
            self.injected[f"refused {refusal.rule} {resource_type}"] += 1
            return refusal.status, _outcome(refusal.code, f"{self.vendor}: {refusal}")

    # -- the rules ---------------------------------------------------------------------------
    def check(self, method: str, resource_path: str, params: list[tuple[str, str]]) -> str | None:
        """Refuse what the vendor refuses; the upstream target of a cursor page, if one."""
        resource_type, _, instance = resource_path.partition("/")
        named = dict(params)
        if self.vendor == "oracle" and resource_type in ("Medication", "MedicationStatement"):
            raise Refusal(404, "no such type", f"{resource_type} is not supported", "not-supported")
        if method != "GET" or instance or resource_type in ("", "Group"):
            return None  # reads, Group reads and Bulk Data requests pass
        if CURSOR in named:
            upstream = self.cursors.get(named[CURSOR])
            if upstream is None:
                raise Refusal(410, "unknown page context", "the page context expired", "expired")
            return upstream
        count = named.get("_count")
        if count is not None and int(count) > MAX_COUNT[self.vendor]:
            raise Refusal(400, "_count too high", f"_count is at most {MAX_COUNT[self.vendor]}")
        if resource_type in CLINICAL:
            self._check_clinical(resource_type, named)
        elif resource_type == "Patient":
            self._check_patient(named)
        if "," in named.get("_id", ""):
            raise Refusal(400, "id list", "one _id per search")
        self._check_dates(params)
        return None

    def _check_clinical(self, resource_type: str, named: dict[str, str]) -> None:
        if not any(key in named for key in PATIENT_KEYS):
            raise Refusal(400, "patient required", "Required search parameter missing", "required")
        if any("," in named.get(key, "") for key in ("patient", "subject")):
            raise Refusal(400, "patient list", "only one patient per search", "not-supported")
        observation = self.vendor == "epic" and resource_type == "Observation"
        if observation and "code" not in named and "category" not in named:
            raise Refusal(400, "code or category", "code or category is required", "required")

    def _check_patient(self, named: dict[str, str]) -> None:
        if "_id" not in named and "identifier" not in named:
            raise Refusal(400, "patient criteria", "Patient needs _id or identifier", "required")
        if "," in named.get("identifier", "").replace("\\,", ""):
            raise Refusal(400, "identifier list", "one identifier per search")

    def _check_dates(self, params: list[tuple[str, str]]) -> None:
        names = [name for name, _ in params]
        if self.vendor == "epic" and "_lastUpdated" in names:
            raise Refusal(400, "no _lastUpdated", "_lastUpdated is not supported", "not-supported")
        if self.vendor == "oracle":
            if "_lastUpdated" in names and "date" in names:
                raise Refusal(400, "_lastUpdated with date", "_lastUpdated and date together")
            for name, value in params:
                if name in ("_lastUpdated", "date") and not _TIMESTAMP.match(value):
                    raise Refusal(400, "date prefix", f"{name} takes ge or lt with a timestamp")

    # -- the answers -------------------------------------------------------------------------
    async def metadata(self) -> tuple[int, bytes]:
        """The upstream statement as the vendor's: its name, its export levels, its types."""
        response = await self.client.get(f"{self.upstream}/fhir/metadata")
        capability = response.json() | VENDORS[self.vendor]
        exported = {"epic": {"Group"}, "oracle": {"Group", "Patient"}}[self.vendor]
        absent = {"epic": set(), "oracle": {"Medication", "MedicationStatement"}}[self.vendor]
        for rest in capability.get("rest", []):
            rest["operation"] = [o for o in rest.get("operation", []) if o.get("name") != "export"]
            rest["resource"] = [r for r in rest.get("resource", []) if r["type"] not in absent]
            for resource in rest["resource"]:
                if resource["type"] not in exported:
                    resource.pop("operation", None)
                if self.vendor == "epic":  # no _lastUpdated in Epic's statement
                    resource["searchParam"] = [
                        p for p in resource.get("searchParam", []) if p["name"] != "_lastUpdated"
                    ]
        return 200, self._rewritten(orjson.dumps(capability))

    async def forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        passed = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS}
        url = target if target.startswith("http") else f"{self.upstream}{target}"
        response = await self.client.request(method, url, headers=passed, content=body)
        content = response.content
        if response.headers.get("content-type", "").startswith("application/fhir+json"):
            document = orjson.loads(content)
            if isinstance(document, dict) and document.get("resourceType") == "Bundle":
                await self._reshape(document)
                content = orjson.dumps(document)
        return response.status_code, self._rewritten(content)

    async def _reshape(self, bundle: dict[str, Any]) -> None:
        """No total; next links as cursors; Oracle: referenced Medications contained."""
        bundle.pop("total", None)
        for link in bundle.get("link", []):
            if link.get("relation") == "next":
                link["url"] = self._cursor(link["url"])
        if self.vendor == "oracle":
            for entry in bundle.get("entry", []):
                await self._contain_medication(entry.get("resource") or {})

    def _cursor(self, upstream_url: str) -> str:
        token = secrets.token_urlsafe(12)
        self.cursors[token] = upstream_url
        parts = urlsplit(upstream_url)
        return f"{self.upstream}{parts.path}?{urlencode({CURSOR: token})}"

    async def _contain_medication(self, resource: dict[str, Any]) -> None:
        reference = (resource.get("medicationReference") or {}).get("reference", "")
        if not reference.startswith("Medication/"):
            return
        medication_id = reference.split("/", 1)[1]
        if medication_id not in self.medications:
            answer = await self.client.get(f"{self.upstream}/fhir/Medication/{medication_id}")
            self.medications[medication_id] = answer.json()
        contained = {k: v for k, v in self.medications[medication_id].items() if k != "meta"}
        contained["id"] = f"med-{medication_id}"
        resource["contained"] = [*resource.get("contained", []), contained]
        resource["medicationReference"] = {"reference": f"#med-{medication_id}"}

    def _rewritten(self, content: bytes) -> bytes:
        return content.replace(self.upstream.encode(), self.origin.encode())


def _outcome(code: str, diagnostics: str) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="origin of the real server, e.g. http://127.0.0.1:8090")
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--vendor", choices=sorted(VENDORS), required=True)
    arguments = parser.parse_args()
    asyncio.run(serve(_Emulator(arguments), arguments.stats))
