"""Generate a synthetic Bulk-Data-style FHIR R4 NDJSON export for the benchmarks.

Usage (from the repository root; no Makefile needed):

    .venv/bin/python bench/make_export.py 1m                  # -> bench/data/hospital-1000000
    .venv/bin/python bench/make_export.py 1m --gzip           # -> bench/data/hospital-1000000-gz
    .venv/bin/python bench/make_export.py 250k --shape legacy --seed 7 --out /tmp/export

The export has exactly N resources in the shape named by `--shape`, kept as data in
`bench/shapes/<shape>.toml` with the source of each figure:

- `hospital` (default): the per-type mix and sizes of a hospital's export, after the Synthea
  Bulk Data sample and published Bulk Data figures: Observations the majority, then Encounters,
  Procedures, DiagnosticReports, MedicationRequests and MedicationAdministrations, Conditions,
  DocumentReferences with base64 notes, Immunizations; narratives (`text.div`); the mapped codes
  used for other diseases (doxorubicin for breast cancer, fluorouracil for colorectal cancer,
  cisplatin by its display, HBsAg screening, interferon for hepatitis B) and the traps of the
  cohort rules (HCC never resected or resected first, TACE, ablation, transplant, other liver
  cancers, liver metastases, a living liver donor); salvage-surgery patients planted with the
  resource shapes of the reference fixtures (`fixtures/fhir_builders.py`). Patients interleave
  in the files, and each type is split into files of `max_file_mb`, as servers deliver them.
- `legacy`: the first benchmark's export (`bench/legacy_export.py`), byte for byte.

Files are written patient by patient, so memory stays flat whatever N is; the same N, shape,
seed and options give the same bytes. The manifest `<out>.manifest.json` (beside the directory,
so that `fhir-hcc` does not read it as FHIR) is written last and records the mix, the files and
the planted patients (the ids of the salvage patients the cohort must find): an export without
it is incomplete. The mix written is printed.
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))  # fhir_builders: shared with the fixtures

import hospital_export  # noqa: E402
import legacy_export  # noqa: E402

DATA_DIR = HERE / "data"
SHAPES_DIR = HERE / "shapes"
DEFAULT_SHAPE = "hospital"

Json = dict[str, Any]
Engine = Callable[[Any, Json, int, list[str], int], dict[str, list[str]]]
ENGINES: dict[str, Engine] = {
    "hospital": hospital_export.write_patients,
    "legacy": legacy_export.write_patients,
}


class ExportError(Exception):
    """A bad argument or an unwritable output; the message is one line."""


def load_shape(name: str) -> Json:
    """`bench/shapes/<name>.toml`, checked for what every engine needs."""
    path = SHAPES_DIR / f"{name}.toml"
    try:
        shape = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in SHAPES_DIR.glob("*.toml")))
        raise ExportError(f"no shape {name!r} (known: {known})") from None
    except tomllib.TOMLDecodeError as error:
        raise ExportError(f"{path}: {error}") from None
    needed = ("name", "format_version", "resources_per_patient", "min_resources_per_patient")
    needed += ("max_file_mb", "interleave_patients", "kinds")
    missing = [key for key in needed if key not in shape]
    if missing or shape.get("name") not in ENGINES:
        raise ExportError(f"{path}: missing {missing} or no engine for name {shape.get('name')!r}")
    return shape


class ExportWriter:
    """Appends lines to `<Type>.ndjson[.gz]`, or `<Type>.000.ndjson[.gz]`, `.001`, ... when a
    file would pass `max_file_bytes` of NDJSON; counts resources and bytes per type."""

    def __init__(self, directory: Path, compress: bool, max_file_bytes: int) -> None:
        self.directory = directory
        self.compress = compress
        self.max_file_bytes = max_file_bytes
        self.counts: Counter[str] = Counter()
        self.ndjson_bytes: Counter[str] = Counter()  # uncompressed
        self.files: dict[str, list[str]] = {}
        self._open: dict[str, tuple[IO[bytes], IO[bytes], int]] = {}  # type -> file, raw, bytes

    @property
    def total(self) -> int:
        return self.counts.total()

    def write(self, resource: Json) -> None:
        line = orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE)
        self.write_line(resource["resourceType"], line)

    def write_line(self, resource_type: str, line: bytes) -> None:
        handle, raw, written = self._open.get(resource_type) or self._next_file(resource_type)
        if self.max_file_bytes and written and written + len(line) > self.max_file_bytes:
            handle, raw, written = self._next_file(resource_type)
        handle.write(line)
        self._open[resource_type] = (handle, raw, written + len(line))
        self.counts[resource_type] += 1
        self.ndjson_bytes[resource_type] += len(line)

    def _next_file(self, resource_type: str) -> tuple[IO[bytes], IO[bytes], int]:
        self._close(resource_type)
        names = self.files.setdefault(resource_type, [])
        number = f".{len(names):03d}" if self.max_file_bytes else ""
        name = f"{resource_type}{number}.ndjson{'.gz' if self.compress else ''}"
        names.append(name)
        raw: IO[bytes] = (self.directory / name).open("wb", buffering=1 << 20)
        handle = raw
        if self.compress:  # mtime=0 keeps gzip output byte-identical between runs
            handle = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
        return handle, raw, 0

    def _close(self, resource_type: str) -> None:
        handle, raw, _ = self._open.pop(resource_type, (None, None, 0))
        if handle is not None and raw is not None:
            handle.close()
            raw.close()  # GzipFile leaves the file object it was given open

    def close(self) -> None:
        for resource_type in list(self._open):
            self._close(resource_type)


def patient_kinds(rng: random.Random, patients: int, shares: dict[str, float]) -> list[str]:
    """The kind of each patient: each kind's share of the patients (at least one salvage
    patient) at random places, background for the rest. The last patient is always
    background, so its routine care can absorb any remainder and make N exact."""
    wanted = [kind for kind, share in shares.items() for _ in range(round(patients * share))]
    if "salvage" not in wanted:
        wanted.insert(0, "salvage")
    kinds = ["background"] * patients
    places = rng.sample(range(patients - 1), min(len(wanted), patients - 1))
    for place, kind in zip(places, wanted, strict=False):
        kinds[place] = kind
    return kinds


def make_export(
    resources: int,
    out: Path,
    *,
    shape: str = DEFAULT_SHAPE,
    seed: int = 2004,
    compress: bool = False,
    patients: int | None = None,
) -> Json:
    """Write the export to `out` (replacing it) and return its manifest."""
    spec = load_shape(shape)
    patients = patients or max(1, resources // spec["resources_per_patient"])
    if resources < spec["min_resources_per_patient"] * patients:
        raise ExportError(
            f"{resources} resources for {patients} patients: need at least "
            f"{spec['min_resources_per_patient']} per patient"
        )
    manifest_path(out).unlink(missing_ok=True)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    kinds = patient_kinds(random.Random(f"{seed}:kinds"), patients, spec["kinds"])
    writer = ExportWriter(staging, compress, int(spec["max_file_mb"] * 1e6))
    try:
        planted = ENGINES[spec["name"]](writer, spec, resources, kinds, seed)
    finally:
        writer.close()
    types = sorted(writer.counts, key=lambda t: -writer.counts[t])
    manifest = {
        "format_version": spec["format_version"],
        "shape": spec["name"],
        "resources": writer.total,
        "seed": seed,
        "gzip": compress,
        "patients": patients,
        "planted": {kind: len(ids) for kind, ids in sorted(planted.items())},
        "salvage_ids": sorted(planted.get("salvage", [])),
        "by_type": {t: writer.counts[t] for t in types},
        "ndjson_bytes": {t: writer.ndjson_bytes[t] for t in types},
        "bytes": {t: sum((staging / n).stat().st_size for n in writer.files[t]) for t in types},
        "files": {t: writer.files[t] for t in types},
    }
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    manifest_path(out).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def mix_table(manifest: Json) -> str:
    """The mix an export holds: count, share, MB, bytes each per type (Markdown)."""
    total = manifest["resources"]
    size = sum(manifest["ndjson_bytes"].values())
    rows = [
        "| resource type | count | share | MB | share of bytes | bytes each | files |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, count in manifest["by_type"].items():
        ndjson = manifest["ndjson_bytes"][name]
        rows.append(
            f"| {name} | {count:,} | {count / total:.1%} | {ndjson / 1e6:,.1f} "
            f"| {ndjson / size:.1%} | {ndjson / count:,.0f} | {len(manifest['files'][name])} |"
        )
    on_disk = sum(manifest["bytes"].values()) / 1e6
    rows.append(
        f"| total | {total:,} | | {size / 1e6:,.1f} ({on_disk:,.1f} on disk) | "
        f"| {size / total:,.0f} | {sum(len(f) for f in manifest['files'].values())} |"
    )
    planted = ", ".join(f"{kind} {n:,}" for kind, n in manifest["planted"].items())
    rows.append(f"\n{manifest['patients']:,} patients ({manifest['shape']} shape): {planted}")
    return "\n".join(rows)


def manifest_path(directory: Path) -> Path:
    return directory.with_name(directory.name + ".manifest.json")


def read_manifest(directory: Path) -> Json | None:
    """The manifest of a complete export, or None when there is none (absent or unfinished)."""
    try:
        return orjson.loads(manifest_path(directory).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def default_directory(
    resources: int,
    compress: bool,
    patients: int | None = None,
    root: Path = DATA_DIR,
    shape: str = DEFAULT_SHAPE,
) -> Path:
    """bench/data/<shape>-N, with -pP for a chosen patient count and -gz for gzip."""
    name = f"{shape}-{resources}{f'-p{patients}' if patients else ''}{'-gz' if compress else ''}"
    return root / name


def ndjson_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.iterdir()):
        if path.name.endswith((".ndjson", ".ndjson.gz")):
            yield path


def resource_count(text: str) -> int:
    """A resource count: 1000000, 1_000_000, 1000k or 1m."""
    multiplier = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    digits = text[:-1] if multiplier > 1 else text
    try:
        value = int(float(digits.replace("_", "")) * multiplier)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a resource count: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"resource count must be positive: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "resources", type=resource_count, help="number of resources, e.g. 1000000 or 1m"
    )
    parser.add_argument(
        "--shape", default=DEFAULT_SHAPE, help=f"a shape of bench/shapes/ (default {DEFAULT_SHAPE})"
    )
    parser.add_argument("--out", type=Path, help="output directory (default bench/data/SHAPE-N)")
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    parser.add_argument("--seed", type=int, default=2004, help="random seed (default 2004)")
    parser.add_argument("--patients", type=int, help="number of patients (default from the shape)")
    args = parser.parse_args(argv)
    out = args.out or default_directory(
        args.resources, args.gzip, args.patients, DATA_DIR, args.shape
    )
    try:
        manifest = make_export(
            args.resources,
            out,
            shape=args.shape,
            seed=args.seed,
            compress=args.gzip,
            patients=args.patients,
        )
    except ExportError as error:
        print(f"make_export: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"make_export: {error.filename or out}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {out}\n{mix_table(manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
