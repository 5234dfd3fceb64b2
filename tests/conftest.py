"""Shared fixtures: one read-mostly lab for the whole session, fresh labs where a test breaks one,
and a session-wide check that nothing of any lab is left behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from tests.helpers import SHARED_PREFIX, TEST_PREFIXES, chaoslab_command, fresh_lab, lab_leftovers


@pytest.fixture
def cli():
    """The chaoslab command line, run as a subprocess."""
    return chaoslab_command


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fails the session if any test left a namespace, a daemon or a state file. What existed
    before the session (another session's lab) is neither blamed nor removed."""
    before = lab_leftovers()
    yield
    leftovers = {kind: [item for item in items if item not in before[kind]] for kind, items in lab_leftovers().items()}
    if any(leftovers.values()):
        text = str(leftovers)
        for prefix in TEST_PREFIXES:  # clean up for the next run, then fail loudly
            if f"{prefix}-" in text or f"/{prefix}" in text:
                Lab(LabSettings(prefix=prefix)).down()
        pytest.fail(f"the test session left lab resources behind: {leftovers}")


@pytest.fixture(scope="session")
def shared_lab() -> Iterator[Lab]:
    """One seed lab for tests that only read it, or break it and heal it themselves."""
    yield from fresh_lab(SHARED_PREFIX)


@pytest.fixture
def healthy_lab(shared_lab: Lab) -> Iterator[Lab]:
    """The shared lab, back in steady state after the test whatever it broke."""
    yield shared_lab
    shared_lab.heal()
    shared_lab.wait_ready()
