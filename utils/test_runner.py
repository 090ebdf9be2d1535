"""The quick self-test of the whole system logic (the design's `python utils/test_runner.py`): the fast test tier,
every test that runs inside one process (no engine, no training launch, no server), in about a minute.

    python utils/test_runner.py                 # the fast tier: python -m pytest -m "not slow"
    python utils/test_runner.py --all           # everything, as CI runs it (tens of minutes; docs/tests.md)
    python utils/test_runner.py -k teacher -x   # any other argument goes to pytest

Exit status: pytest's (0 every test passed, 1 a test failed, 5 no test selected, ...).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def pytest_args(argv: list[str]) -> list[str]:
    """pytest's arguments for ours: the fast tier unless --all, then the rest as given."""
    if "--all" in argv:
        return [a for a in argv if a != "--all"]
    return ["-m", "not slow", *argv]


def main(argv: list[str] | None = None) -> int:
    import pytest

    os.chdir(REPO)  # pyproject.toml's settings and testpaths, whatever folder it was started from
    sys.path.insert(0, str(REPO))  # as `python -m pytest` from the root: the tests import `tests.*`
    return int(pytest.main(pytest_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
