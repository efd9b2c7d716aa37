"""Schemathesis drives the real server over the whole OpenAPI description, once with an
admin's token and once with no credential: no answer may be a server error, carry a
status or content type the description does not list, or break its documented schema.

Examples per operation are bounded (``MAX_EXAMPLES``) and the seed is fixed, so a run
takes about half a minute per credential and a failure reproduces.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from citypilot.bench.server import server_process
from tests.conftest import ADMIN, Server, seed_accounts

#: Examples per operation, by credential (without one, every gated operation is a 401).
MAX_EXAMPLES = {"admin": 15, "anonymous": 4}
SEED = 20261201
#: The description lists ``NGSILD-Tenant`` on the NGSI-LD operations: the fuzzer sends
#: many names, of which the server creates at most one tenant (each is a data space of
#: its own, with its store, bus and notifier); the others are refused as documented.
FUZZ_TENANTS = {"CITYPILOT_TENANTS_ALLOWED": '["fuzz"]', "CITYPILOT_MAX_TENANTS": "1"}
#: What the description promises and the server must keep.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
)


def run_schemathesis(server: Server, who: str, tmp_path: Path) -> str:
    """Run ``st run`` against the server; its output (it fails the test on any finding)."""
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES[who]),
        "--seed",
        str(SEED),
        # Not the stateful phase: it follows links it infers between operations and fills
        # path parameters from answers, e.g. an empty id that makes
        # POST /ngsi-ld/v1/entities/{id}/attrs the path of entity "attrs" (rightly 405).
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    if who == "admin":
        command += ["--header", f"Authorization: Bearer {server.token(ADMIN)}"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    output = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated", output)
    print(f"schemathesis as {who}: {cases.group(1) if cases else '?'} test cases")
    assert done.returncode == 0, output[-12000:]
    assert cases is not None and int(cases.group(1)) > 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the fuzz run's own: as an admin it rotates device keys, disables users
    and earns login back-off, which must not reach the other tests' server."""
    data = tmp_path_factory.mktemp("fuzz-data")
    asyncio.run(seed_accounts(data))
    with server_process(data, FUZZ_TENANTS) as url:
        yield Server(url, data)


@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_the_server_keeps_its_description(own_server: Server, who: str, tmp_path: Path):
    output = run_schemathesis(own_server, who, tmp_path)
    assert "Tested: " in output
