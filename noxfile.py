"""Development sessions: `nox -l` lists them; `nox -s tests-3.12` runs one."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "mypy", "tests", "import_minimal"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LINT_TOOLS = ["ruff==0.17.6", "mypy==2.4.1"]


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session(python="3.11")
def mypy(session: nox.Session) -> None:
    session.install("-e", ".[test,fast]", *LINT_TOOLS)
    session.run("mypy", "--strict", "src")
    session.run("mypy", "--strict", "tests/typing")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite against a real redis-server, with the `fast` extra."""
    session.install("-e", ".[test,fast]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def import_minimal(session: nox.Session) -> None:
    """Install with no extras: the package imports and the suite passes on the stdlib paths."""
    session.install(".")
    session.run(
        "python",
        "-c",
        "import chenu_cache, importlib.util as u; "
        "assert u.find_spec('orjson') is None and u.find_spec('fastapi') is None; "
        "print('chenu_cache', chenu_cache.__version__, 'imports with no extras')",
    )
    session.install(".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def redis_oldest(session: nox.Session) -> None:
    """The oldest redis-py we admit."""
    session.install("-e", ".[test]", "redis==5.0.1")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with the peers; rewrites docs/benchmarks.md."""
    session.install(
        "-e",
        ".[fast]",
        "aiocache",
        "cashews",
        "fastapi-cache2",
        "jinja2",  # fastapi-cache2 imports starlette's templating
        "async-lru",
    )
    session.run("python", "-m", "benchmarks.run", *session.posargs)
    session.run("python", "-m", "benchmarks.failover_latency", "--runs", "2")
