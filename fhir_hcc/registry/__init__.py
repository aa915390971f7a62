"""The registry: scheduled syncs of a FHIR server into one SQLite file, with a cohort per run.

`sync` runs one sync (see `fhir_hcc.registry.sync` for the modes and safety rules); `Registry`
opens the file for reading (`runs`, `cohort`, `summary`); `diff_runs` compares two runs'
cohorts. The default file is `default_path()`: `$FHIR_HCC_REGISTRY`, else
`$XDG_DATA_HOME/fhir-hcc/registry.sqlite` (`~/.local/share/fhir-hcc/registry.sqlite`).
"""

from fhir_hcc.registry.diff import diff_runs
from fhir_hcc.registry.errors import (
    RegistryBusyError,
    RegistryError,
)
from fhir_hcc.registry.store import Registry, default_path
from fhir_hcc.registry.sync import MODES, RegistrySource, SyncSettings, sync

__all__ = [
    "MODES",
    "Registry",
    "RegistryBusyError",
    "RegistryError",
    "RegistrySource",
    "SyncSettings",
    "default_path",
    "diff_runs",
    "sync",
]
