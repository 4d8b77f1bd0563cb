"""Shared fixtures of the RTL benches.

Each sim test records one row of the regression summary table with ``sim_row(...)`` (kept in
the test report's ``user_properties``, which pytest-xdist ships to the controller); the root
conftest (``tests/conftest.py``) prints the rows as a table at the end of ``make sim`` /
``make test``.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def sim_row(record_property):
    """``sim_row(case=..., result=..., cycles=..., ...)`` adds a row to the summary table."""
    def add(**fields):
        record_property("sim_row", fields)
    return add
