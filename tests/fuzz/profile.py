"""The fuzz suite's hypothesis settings, one profile for every fuzz test.

``CITYHUB_FUZZ_EXAMPLES`` sets the examples per test: a small default keeps the regular suite
fast, ``make fuzz`` asks for 100 000. No deadline (a long input may take a while, that is not a
failure) and no example database: every run starts from the seed, which is random unless
``CITYHUB_FUZZ_SEED`` fixes it and is printed with every failure, so a run can be repeated
exactly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, seed, settings

DEFAULT_EXAMPLES = 300
EXAMPLES = int(os.environ.get("CITYHUB_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
SEED = int(os.environ.get("CITYHUB_FUZZ_SEED") or secrets.randbits(32))

settings.register_profile(
    "cityhub-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

_F = TypeVar("_F", bound=Callable[..., Any])


def fuzz(test: _F) -> _F:
    """Apply the fuzz profile and the run's seed to a hypothesis test (put it above ``@given``)."""
    return seed(SEED)(settings.get_profile("cityhub-fuzz")(test))  # type: ignore[no-any-return]
