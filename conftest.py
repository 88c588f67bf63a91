"""pytest settings for the nbval run of `make test` (`pytest --nbval-lax build/notebooks`); the unit tests' fixtures
are in tests/conftest.py.

nbval reads a cell's output messages only once the cell has replied, and gives up when no message comes for a fixed
5 s (`IPyNbCell.output_timeout`, not an option). A notebook cell that evaluates CamVid runs for minutes; on 2 loaded
cores the kernel's last messages (the "idle" status among them) have come later than that, and the cell failed with
"Timeout of 5 seconds exceeded waiting for output" although it had passed. A minute is plenty, and a kernel that
really died still fails.
"""
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = OUTPUT_TIMEOUT_S
