"""docs/quickstart.md: commands a reader can run today (the package is not on PyPI yet)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from chenu_cache._cli import _parser

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def _shell_lines() -> list[str]:
    text = QUICKSTART.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    return [line.partition("  #")[0].strip() for block in blocks for line in block.splitlines()]


def test_install_works_without_the_package_index() -> None:
    lines = _shell_lines()
    assert "python -m pip install -e ." in lines
    assert 'python -m pip install -e ".[fastapi]"' in lines
    assert 'python -m pip install -e ".[fast]"' in lines
    assert "python -m build" in lines
    assert "python -m pip install dist/chenu_cache-*.whl" in lines
    # Not a command to copy while the index has no such package.
    unpublished = [
        line for line in lines if re.match(r"(python -m )?pip install .?chenu-cache", line)
    ]
    assert unpublished == []


CLI_LINES = [line for line in _shell_lines() if line.startswith("python -m chenu_cache ")]


@pytest.mark.parametrize("line", CLI_LINES)
def test_the_cli_commands_shown_parse(line: str) -> None:
    args = shlex.split(line)[3:]
    assert _parser().parse_args(args).command is not None
