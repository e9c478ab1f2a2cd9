"""The service against its own published contract: schemathesis fuzzes a real ``python -m service``
process from ``/openapi.json`` with every check, with and without an API key configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.test_process import start

ST = str(Path(sys.executable).with_name("st"))
EXAMPLES = 100  # per operation


@pytest.mark.slow
@pytest.mark.parametrize("api_key", [None, "contract-key"])
def test_schemathesis_finds_nothing(tiny_exported: Path, api_key: str | None, tmp_path: Path) -> None:
    env = {"CMAL_API_KEY": api_key} if api_key else {}
    proc, url = start(tiny_exported, **env)
    try:
        auth = ["--header", f"Authorization: Bearer {api_key}"] if api_key else []
        result = subprocess.run(
            [
                ST, "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
                "--seed", "20261202", "--workers", "2", "--no-color", *auth,
            ],
            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks"},
        )  # fmt: skip
        report = result.stdout[-6000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "Unresolvable" not in report and " passed" in report, report
        operations = [line for line in result.stdout.splitlines() if "Selected:" in line]
        assert (
            operations and operations[0].split()[-1].split("/")[0] == operations[0].split()[-1].split("/")[1]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
