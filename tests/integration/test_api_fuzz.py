"""Schemathesis drives the real server over the whole OpenAPI description, once with an
admin's token and once with no credential: no answer may be a server error, carry a
status or content type the description does not list, or break its documented schema.

Examples per operation are bounded (``MAX_EXAMPLES``) and the seed is fixed, so a run
takes about half a minute per credential and a failure reproduces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN, Server

#: Examples per operation, by credential (without one, every gated operation is a 401).
MAX_EXAMPLES = {"admin": 15, "anonymous": 4}
SEED = 20261201
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
    # its failed logins count against an address of its own, so that the back-off they
    # earn does not hold back the other tests' logins from loopback
    command += ["--header", "X-Forwarded-For: 192.0.2.250"]
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


@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_the_server_keeps_its_description(server: Server, who: str, tmp_path: Path):
    output = run_schemathesis(server, who, tmp_path)
    assert "Tested: " in output
