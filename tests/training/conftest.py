from __future__ import annotations

import sys
from pathlib import Path

import pytest

# standin.py and kill_driver.py live beside this file; tests import them by module name.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def standin():
    from standin import StandinLM

    return StandinLM
