"""The triton backend's side of the contract without a server: gRPC statuses become the
service's exceptions, and an API started against an absent Triton says so and stops waiting."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.utils import InferenceServerException

from cmal.bench.server import free_port
from service.runtime import BackendOverloaded, BackendTimeout, BackendUnavailable
from service.triton_backend import TritonBackend, _translate


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (
            "StatusCode.UNAVAILABLE",
            "[request id: <id_unknown>] Exceeds maximum queue size",
            BackendOverloaded,
        ),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", BackendTimeout),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", BackendUnavailable),
    ],
)
def test_grpc_statuses_become_the_services_exceptions(status: str, message: str, kind: type) -> None:
    translated = _translate(InferenceServerException(message, status=status))
    assert type(translated) is kind and str(translated) == message


def test_other_errors_stay_what_they_are() -> None:
    error = InferenceServerException("unexpected shape", status="StatusCode.INVALID_ARGUMENT")
    assert _translate(error) is error  # a bug on our side: the batch fails with 500


def test_an_absent_triton_is_named_after_the_wait(demo_dir: Path) -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BackendUnavailable, match=f"Triton at {url} not ready after 1 s"):
        TritonBackend(demo_dir, url, timeout_s=1, wait_s=1)  # raising at all: it stopped waiting
