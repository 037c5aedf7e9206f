"""How much Hypothesis explores, by run: few examples in `make test`, more in CI, many in `make chaos`.

Never derandomized: every run draws from a new seed, printed in pytest's header, so each run
explores inputs the last one did not, and a failure can be replayed exactly with
``VEOBOT_HYPOTHESIS_SEED=<seed>``. Failing examples are also kept in .hypothesis/ (replayed
first by later local runs) and printed as a ``@reproduce_failure`` blob to paste into the test.
"""

from __future__ import annotations

import os
import random

from hypothesis import core, settings

PROFILE = os.environ.get("VEOBOT_HYPOTHESIS", "quick")
SCALE = {"quick": 1, "ci": 3, "full": 20}
SEED = int(os.environ.get("VEOBOT_HYPOTHESIS_SEED") or random.randrange(2**32))

for name in SCALE:
    settings.register_profile(name, deadline=None, print_blob=True, derandomize=False)


def install() -> str:
    """Load this run's profile and seed; returns the line pytest prints in its header."""
    if PROFILE not in SCALE:
        raise ValueError(f"VEOBOT_HYPOTHESIS must be one of {', '.join(SCALE)} (got {PROFILE!r})")
    settings.load_profile(PROFILE)
    if core.global_force_seed is None:  # --hypothesis-seed on the command line wins
        core.global_force_seed = SEED
    return (
        f"hypothesis: profile {PROFILE} (x{SCALE[PROFILE]} examples), seed {core.global_force_seed} "
        f"(replay with VEOBOT_HYPOTHESIS_SEED={core.global_force_seed})"
    )


def examples(quick: int, *, full: int | None = None) -> int:
    """``quick`` examples in `make test`, more in CI, ``full`` (default: many more) in `make chaos`."""
    if PROFILE == "full" and full is not None:
        return full
    return quick * SCALE.get(PROFILE, 1)
