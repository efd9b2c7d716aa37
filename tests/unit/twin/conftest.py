"""Shared fixtures of the twin tests: one small generated city per test session."""

from __future__ import annotations

from datetime import datetime

import pytest

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.twin import City, generate_city
from citypilot.twin.environment import TIMEZONE

SEED = 7
SMALL = 0.1


@pytest.fixture(scope="session")
def small_city() -> City:
    """The town of the fast suite (scale 0.1), generated once."""
    return generate_city(SEED, SMALL)


@pytest.fixture(scope="session")
def registry() -> TypeRegistry:
    """The platform's built-in type registry."""
    return TypeRegistry(BUILTIN_TYPES)


def local(text: str) -> datetime:
    """A local (Europe/Paris) instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TIMEZONE)
