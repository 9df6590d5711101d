"""Every example under examples/ runs (the FastAPI one is driven in tests/contrib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("basic.py", "cached None is not a miss: None"),
        ("methods.py", "queries after three calls: 1"),
        ("failover_demo.py", "breaker: open failovers: 1"),
    ],
)
def test_example_runs(script: str, expect: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHENU_CACHE_REDIS_URL"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout, out.stdout
    assert "Traceback" not in out.stderr
