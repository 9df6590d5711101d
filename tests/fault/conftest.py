"""Deployments of the fault tests' own: each started for one test and always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deployments import Cluster, SentinelSetup, cli_binary


@pytest.fixture
def cluster(redis_server_binary_path: str) -> Iterator[Cluster]:
    if cli_binary(redis_server_binary_path) is None:
        pytest.fail("redis-cli is needed for the cluster tests")
    deployment = Cluster(redis_server_binary_path)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def sentinel(redis_server_binary_path: str) -> Iterator[SentinelSetup]:
    deployment = SentinelSetup(redis_server_binary_path)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()
