"""pytest settings for the nbval run of `make test` (`pytest --nbval-lax build/notebooks`); the unit tests' fixtures
are in tests/conftest.py.

nbval reads a cell's output messages only once the cell has replied, and gives up when no message comes for a fixed
5 s (`IPyNbCell.output_timeout`, not an option). Notebook 06's CamVid cell runs for minutes, and on 2 loaded cores
it failed with "Timeout of 5 seconds exceeded waiting for output": its last messages, the "idle" status among them,
came late or not at all. This wait covers the first case, and fewer progress-bar messages (`make test` sets
TQDM_MININTERVAL, see gsvlib/progress.py) the second; a cell whose messages are really lost still fails, a minute
later.
"""
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = OUTPUT_TIMEOUT_S
