"""`python -m fhir_hcc ...`: the `fhir-hcc` command, where no console script is on the PATH."""

import sys

from fhir_hcc.cli import main

sys.exit(main())
