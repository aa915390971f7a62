"""Helpers shared by the server unit tests (HTTP is mocked with pytest-httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.options import ClientOptions
from server.fake_fhir import BASE

T = TypeVar("T")


def fast_options(**changes: Any) -> ClientOptions:
    """Options whose backoff is short enough for tests (waits are recorded, not slept)."""
    return ClientOptions(**{"backoff_base": 0.01, "max_retries": 3, **changes})


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def run_client(sleeps: SleepRecorder) -> Callable[..., Any]:
    """Run `action(client)` on a FhirClient against BASE and return its result."""

    def run(action: Callable[[FhirClient], Coroutine[Any, Any, T]], **kwargs: Any) -> T:
        async def main() -> T:
            options = kwargs.pop("options", fast_options())
            async with FhirClient(BASE, options, sleep=sleeps, **kwargs) as client:
                return await action(client)

        return asyncio.run(main())

    return run
