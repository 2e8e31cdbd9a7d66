from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # until the project is installed (pyproject lands with the lead)
    sys.path.insert(0, str(ROOT))

from standin import StandinLM


@pytest.fixture
def standin() -> type[StandinLM]:
    return StandinLM
