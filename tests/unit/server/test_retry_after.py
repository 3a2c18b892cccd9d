"""An Unavailable error's wait (server/errors.py): a google.rpc.RetryInfo detail and the
`retry-after` trailer in whole seconds rounded up (RFC 9110 §10.2.3), which the gateway
exposes as the Retry-After header; none without a wait."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2, status_pb2

from server import errors
from server.domain.errors import DeadlineExceeded, Unavailable, UpstreamFailed


def _retry_info(status: status_pb2.Status) -> error_details_pb2.RetryInfo | None:
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            return info
    return None


def test_a_wait_becomes_retry_info_and_a_rounded_up_trailer() -> None:
    status = errors.to_status(Unavailable("open", reason="CIRCUIT_OPEN", retry_after_s=2.25))
    assert status.code == code_pb2.UNAVAILABLE
    info = _retry_info(status)
    assert info is not None and info.retry_delay.ToNanoseconds() == 2_250_000_000
    assert dict(errors.status_trailers(status))["retry-after"] == "3"


def test_a_whole_second_stays_and_a_past_wait_is_zero() -> None:
    whole = errors.to_status(Unavailable("x", retry_after_s=1.0))
    assert dict(errors.status_trailers(whole))["retry-after"] == "1"
    past = errors.to_status(Unavailable("x", retry_after_s=-4.0))
    assert dict(errors.status_trailers(past))["retry-after"] == "0"


def test_no_wait_no_retry_info_nor_trailer() -> None:
    status = errors.to_status(Unavailable("database down"))
    assert _retry_info(status) is None
    assert "retry-after" not in dict(errors.status_trailers(status))


def test_upstream_errors_codes() -> None:
    assert errors.to_status(UpstreamFailed("bad")).code == code_pb2.UNKNOWN
    assert errors.to_status(DeadlineExceeded("slow")).code == code_pb2.DEADLINE_EXCEEDED
