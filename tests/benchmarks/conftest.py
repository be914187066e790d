"""Every benchmark test runs a benchmark script end to end: slow by nature."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/benchmarks/" in item.nodeid:
            item.add_marker(pytest.mark.slow)
