"""The console's tests: helpers from this folder, a signed-in HTTP client, held orders (from the
real review service, or from a stand-in of its decision API when review is not started)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from console_helpers import console_url  # noqa: E402

from orderflow.devstack.processes import free_port  # noqa: E402
from orderflow.testing.pipeline import Pipeline, chosen_services  # noqa: E402
from orderflow.testing.service_auth import service_key  # noqa: E402

# when review is not started, the console forwards decisions to the stand-in (the stack sets
# the variable itself when review runs); decided before the pipeline starts the console
STANDIN_PORT = free_port()
if "review" not in chosen_services() and "console" in chosen_services():
    os.environ["ORDERFLOW_CONSOLE_REVIEW_URL"] = f"http://127.0.0.1:{STANDIN_PORT}"

@pytest.fixture(scope="session")
def console_base(pipeline: Pipeline) -> str:
    if "console" not in pipeline.services:
        pytest.skip("the console is not among ORDERFLOW_TEST_SERVICES")
    return console_url(pipeline)


@pytest.fixture(scope="session")
async def review_standin(pipeline: Pipeline) -> AsyncIterator[object | None]:
    if "review" in pipeline.services:
        yield None
        return
    from review_standin import ReviewStandIn

    async with ReviewStandIn(pipeline.kafka, STANDIN_PORT,
                             service_key(pipeline)).running() as standin:
        yield standin
