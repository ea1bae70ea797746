"""The scenario's units (molecule.yml's platforms), for both test files: their containers and fleet addresses."""

import pytest
from scenario import fleet_address, unit_containers


@pytest.fixture(scope="module")
def units():
    return unit_containers(("thor-01", "thor-02", "thor-03"))


@pytest.fixture(scope="module")
def addresses(units):
    return {unit: fleet_address(container) for unit, container in units.items()}
