"""Fixtures for the power-meter tests (helpers live in energy_fixtures.py)."""
from __future__ import annotations

import pytest
from energy_fixtures import DATA_DIR, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pmic_text() -> str:
    return (DATA_DIR / "pmic_read_adc_pi5.txt").read_text()


