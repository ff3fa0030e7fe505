"""An outside referee: schemathesis generates requests from the server's published OpenAPI schema
(valid and invalid: wrong types, out-of-range values, odd Unicode, missing fields) and sends them
to a live server. None may be answered with a 5xx, and the server's log holds no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import start_server, stop

EXAMPLES = 60  # per operation and phase: ~2,000 requests over the API's operations


@pytest.mark.slow
def test_a_schema_fuzzer_finds_no_server_error(trained_run, poem_run, tmp_path):
    process, base = start_server(str(trained_run), str(poem_run), "--max-tokens", "16")
    report = tmp_path / "schemathesis.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", base + "/openapi.json",
        "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES), "--seed", "1",
        "--workers", "2", "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    environment = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
        metrics = httpx.get(base + "/metrics").text
    finally:
        stop(process)  # exit 0, and no traceback in what the server printed
    assert run.returncode == 0, run.stdout[-4000:]
    found = json.loads(report.read_text())
    assert found["test_cases"]["generated"] >= 1000
    assert found["test_cases"]["with_failures"] == 0 and not found["failures"]
    answered = [line for line in metrics.splitlines() if line.startswith("charrnn_requests_total")]
    assert sum(float(line.split()[-1]) for line in answered) >= 1000
    assert not [line for line in answered if 'status="5' in line]
