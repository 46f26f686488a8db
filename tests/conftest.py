import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def openkbp_source() -> Path:
    """The OpenKBP upstream copy; missing data skips, or fails when RPRLOC_REQUIRE_DATA=1 (CI)."""
    candidates = [os.environ.get("RPRLOC_OPENKBP_SOURCE"), PROJECT_ROOT.parent / "shared" / "datasets" / "openkbp"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "provided-data").is_dir():
            return Path(candidate)
    message = "no OpenKBP source: set RPRLOC_OPENKBP_SOURCE"
    if os.environ.get("RPRLOC_REQUIRE_DATA") == "1":
        pytest.fail(message + " (RPRLOC_REQUIRE_DATA=1)")
    pytest.skip(message)
