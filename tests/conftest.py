"""Test-suite configuration.

Hypothesis: under CI (``CI`` set, as in ``.ci/run`` on the CI machine) the examples are
derandomized, so a given commit always runs the same cases and CI is reproducible; on a
developer machine every run explores new random cases (``HYPOTHESIS_PROFILE=dev``, the default).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
