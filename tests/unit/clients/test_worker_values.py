"""The worker SDK's plain values: JSON payloads and results, handler failures, and
which errors it retries."""

from __future__ import annotations

import math

import httpx
import pytest
from google.protobuf import struct_pb2

from clients.errors import ApiError
from clients.json_values import from_value, to_value
from clients.worker import JobFailed
from clients.worker.retry import is_transient
from orchestrator.jobengine.v1 import worker_service_pb2 as pb


def test_json_values_round_trip_with_integers_as_int() -> None:
    value = {"n": 3, "big": 2**53, "half": 1.5, "list": [None, True, "x", -0.0], "obj": {}}
    assert from_value(to_value(value)) == value
    assert type(from_value(to_value(2.0))) is int  # JSON has one number type
    # Past 2**53 a double no longer holds every integer: such a double stays a float.
    assert type(from_value(to_value(float(2**53 + 2)))) is float
    assert from_value(to_value(1e20)) == 1e20
    assert from_value(to_value((1, 2))) == [1, 2]
    assert from_value(struct_pb2.Value()) is None


def test_json_values_refuse_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        to_value({1, 2})
    with pytest.raises(TypeError):
        to_value(b"bytes")
    with pytest.raises(ValueError):
        to_value(math.nan)
    with pytest.raises(ValueError):
        to_value({"x": math.inf})


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2**53 + 1, 2**53 + 1),
        (-(2**53) - 1, -(2**53) - 1),
        ({"id": 12345678901234567890}, 12345678901234567890),
        ([1, {"deep": [2**64]}], 2**64),
    ],
)
def test_json_values_refuse_integers_a_double_cannot_hold(value: object, shown: int) -> None:
    """A Value number is a double: 2^53 + 1 would arrive as 2^53 (the gateway answers a
    JSON body holding it 400 in the same words)."""
    with pytest.raises(ValueError) as refused:
        to_value(value)
    assert str(refused.value) == (
        f"{shown} is an integer beyond 2^53, which a JSON value field carries as a double;"
        " send it as a string"
    )
    assert from_value(to_value([2**53, -(2**53), True])) == [2**53, -(2**53), True]


def test_job_failed_is_the_failure_item_it_reports() -> None:
    failed = JobFailed(
        "dependency", "HTTP_503", "upstream down", retryable=False, details={"host": "a"}
    )
    token = pb.FencingToken(job_id="j1", lease_id="l1", attempt=2)
    assert failed.to_failure(token) == pb.JobFailure(
        token=token,
        category="dependency",
        code="HTTP_503",
        message="upstream down",
        retryable=False,
        details=to_value({"host": "a"}).struct_value,
    )
    assert str(failed) == "dependency/HTTP_503: upstream down"
    assert JobFailed("timeout", "T").retryable is True
    long = JobFailed("timeout", "T", "x" * 5000).to_failure(token)
    assert long.message == "x" * 4096


@pytest.mark.parametrize(
    ("category", "code", "message"),
    [
        ("Timeout", "T", "category must be a lowercase slug"),
        ("1timeout", "T", "category must be a lowercase slug"),
        ("a" * 65, "T", "category must be a lowercase slug"),
        ("timeout", "", "code must be 1 to 128 printable characters"),
        ("timeout", "x" * 129, "code must be 1 to 128 printable characters"),
        ("timeout", " T", "code must be 1 to 128 printable characters"),
        ("timeout", "T\n", "code must be 1 to 128 printable characters"),
    ],
)
def test_job_failed_refuses_a_malformed_category_or_code(
    category: str, code: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JobFailed(category, code)


def test_job_failed_details_must_be_json() -> None:
    with pytest.raises(ValueError, match="details must be a JSON object"):
        JobFailed("timeout", "T", details={"x": object()})


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ApiError("UNAVAILABLE", "down"), True),
        (ApiError("DEADLINE_EXCEEDED", "slow"), True),
        (ApiError("RESOURCE_EXHAUSTED", "busy"), True),
        (ApiError("ABORTED", "conflict"), True),
        (ApiError("CANCELLED", "the server shut down"), True),
        # A deadlock, a full pool or a busy SQLite file on the server.
        (ApiError("INTERNAL", "deadlock detected"), True),
        (ApiError("UNKNOWN", "unexpected"), True),
        (ApiError("INVALID_ARGUMENT", "bad"), False),
        (httpx.UnsupportedProtocol("no scheme in 'localhost:5099/oauth/token'"), False),
        (ApiError("server_error", "token endpoint", http_status=503), True),
        (ApiError("FAILED_PRECONDITION", "stale"), False),
        (ApiError("PERMISSION_DENIED", "scope"), False),
        (ApiError("UNAUTHENTICATED", "token"), False),
        (ApiError("invalid_client", "secret", http_status=401), False),
        (httpx.ConnectError("refused"), True),
        (ValueError("bug"), False),
    ],
)
def test_which_errors_are_retried(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient
