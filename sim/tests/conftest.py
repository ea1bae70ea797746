"""The simulator's tests: what its images, stand-ins and `fleet` command do, run for real where they can.

Test modules import what they share from modules beside them (litellm_harness, test_vllm_sim) and from
thorsim, never from a conftest: pytest loads every conftest.py as the module `conftest`, so such an
import finds whichever was loaded last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import litellm_harness
import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # PostgreSQL is the one thing these tests start in Docker.
    for item in items:
        if item.path.is_relative_to(HERE) and "postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server (the simulator's image) for the session; tests make their own databases on it."""
    with litellm_harness.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def backend(tmp_path_factory) -> Iterator[str]:
    """vllm-sim serving the harness's model; yields its OpenAI base URL."""
    with litellm_harness.vllm_backend(tmp_path_factory.mktemp("vllm")) as url:
        yield url
