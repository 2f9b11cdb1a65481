"""HTTP/2 conformance: h2spec's 146 cases against a real ``python -m trioasgi`` process.

h2spec (summerwind/h2spec 2.6.0) is not packaged by Debian: a static build
sits in the shared tools beside the repository (``../shared/tools/h2spec``),
or wherever the ``H2SPEC`` environment variable points. It runs once over
cleartext with prior knowledge and once over TLS (ALPN h2, the certificate
not verified), writes a JUnit report, and every case must pass: the
assertion names each one that did not, as ``section/number: description``,
the form ``h2spec SECTION/NUMBER`` runs alone.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio
import trustme

from tests.http2_gate import needs_http2
from tests.processes import REPO, server_process

H2SPEC = Path(os.environ.get("H2SPEC") or REPO.parent / "shared" / "tools" / "h2spec")
#: What h2spec 2.6.0 runs without a section named.
CASES = 146
#: Per case, in seconds: how long h2spec waits for the answer it expects.
CASE_TIMEOUT = "2"
#: The whole run normally takes a second; this is far past it, even with every case timing out.
RUN_BOUND = 600

pytestmark = [
    needs_http2,
    pytest.mark.skipif(
        not os.access(H2SPEC, os.X_OK),
        reason=f"h2spec not found at {H2SPEC} (set H2SPEC to a built h2spec binary)",
    ),
]

APP = "tests.apps:hello_after_body"


def cases(report: Path) -> tuple[list[str], list[str]]:
    """(every case, the cases that did not pass) in h2spec's JUnit report."""
    every, bad = [], []
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for number, case in enumerate(suite.iter("testcase"), start=1):
            name = f"{suite.get('package')}/{number}: {case.get('classname')}"
            every.append(name)
            outcome = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            if outcome:
                bad.append(f"{name} [{outcome[0]}]")
    return every, bad


async def run_h2spec(port: int, tmp_path: Path, *extra: str) -> None:
    report = tmp_path / "report.xml"
    argv = [str(H2SPEC), "-h", "127.0.0.1", "-p", str(port), "-o", CASE_TIMEOUT]
    with trio.fail_after(RUN_BOUND):
        done = await trio.run_process(
            [*argv, *extra, "-j", str(report)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert report.exists(), f"h2spec wrote no report (exit {done.returncode}):\n{output[-2000:]}"
    every, bad = cases(report)
    assert len(every) == CASES, f"h2spec ran {len(every)} cases, not {CASES}:\n{output[-2000:]}"
    assert not bad, f"{len(bad)} of {CASES} h2spec cases did not pass:\n" + "\n".join(bad)


async def test_h2spec_over_cleartext_with_prior_knowledge(tmp_path: Path) -> None:
    async with server_process(tmp_path, APP, "--no-access-log") as server:
        port = await server.port()
        await run_h2spec(port, tmp_path)


async def test_h2spec_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    tls = [
        "--ssl-certfile",
        str(tmp_path / "server.pem"),
        "--ssl-keyfile",
        str(tmp_path / "server.key"),
    ]
    async with server_process(tmp_path, APP, "--no-access-log", *tls) as server:
        line = r"(?:Listening|Serving) on https://127\.0\.0\.1:(\d+)"
        port = int((await server.wait_for_log(line))[0])
        await run_h2spec(port, tmp_path, "-t", "-k")
