"""gateway.options: the one reader of per-method options (service defaults refined by
the method, with presence), on descriptors of a pool of their own, where our
extensions are unknown fields until re-parsed."""

from __future__ import annotations

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import code_pb2, status_pb2

from gateway.behavior import HTTP_OPTIONS, HttpBehavior, http_behavior
from gateway.options import declared_options, effective_options, merge_with_presence
from gateway.v1 import http_pb2 as gateway_http_pb2

GatewayHttp = gateway_http_pb2.HttpBehavior


def _service(
    defaults: gateway_http_pb2.ServiceHttpBehavior | None, *methods: GatewayHttp | None
) -> ServiceDescriptor:
    """`opts.v1.Svc` in a fresh pool: method M<i> carries `methods[i]` (None: no option)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="opts/v1/svc.proto", package="opts.v1", syntax="proto3"
    )
    file.message_type.add(name="Msg")
    service = file.service.add(name="Svc")
    if defaults is not None:
        service.options.Extensions[gateway_http_pb2.http_defaults].CopyFrom(defaults)
    for index, own in enumerate(methods):
        method = service.method.add(
            name=f"M{index}", input_type=".opts.v1.Msg", output_type=".opts.v1.Msg"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(
            http_pb2.HttpRule(get=f"/v1/m{index}")
        )
        if own is not None:
            method.options.Extensions[gateway_http_pb2.http].CopyFrom(own)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("opts.v1.Svc")


CACHED = gateway_http_pb2.ServiceHttpBehavior(
    defaults=GatewayHttp(
        etag=True,
        cache_control="private, max-age=60",
        error_status=[gateway_http_pb2.ErrorStatus(code=code_pb2.FAILED_PRECONDITION, status=422)],
    )
)


def test_a_method_switches_off_the_service_etag() -> None:
    service = _service(CACHED, GatewayHttp(etag=False))
    merged = effective_options(service.methods[0], HTTP_OPTIONS)
    assert merged.HasField("etag")
    assert merged.etag is False
    assert merged.cache_control == "private, max-age=60"
    assert http_behavior(service.methods[0]).etag is False


def test_overrides_replace_the_service_list_and_never_duplicate() -> None:
    own = GatewayHttp(
        error_status=[
            gateway_http_pb2.ErrorStatus(code=code_pb2.FAILED_PRECONDITION, status=409),
            gateway_http_pb2.ErrorStatus(code=code_pb2.NOT_FOUND, status=410),
        ]
    )
    service = _service(CACHED, own)
    merged = effective_options(service.methods[0], HTTP_OPTIONS)
    assert [(e.code, e.status) for e in merged.error_status] == [
        (code_pb2.FAILED_PRECONDITION, 409),
        (code_pb2.NOT_FOUND, 410),
    ]
    assert http_behavior(service.methods[0]).error_status == {
        code_pb2.FAILED_PRECONDITION: 409,
        code_pb2.NOT_FOUND: 410,
    }


def test_a_method_without_options_inherits_the_service_defaults() -> None:
    service = _service(CACHED, None, GatewayHttp(success_status=201))
    inherited, refined = (http_behavior(method) for method in service.methods)
    assert inherited == HttpBehavior(
        cache_control="private, max-age=60",
        etag=True,
        error_status={code_pb2.FAILED_PRECONDITION: 422},
    )
    assert refined == HttpBehavior(
        success_status=201,
        cache_control="private, max-age=60",
        etag=True,
        error_status={code_pb2.FAILED_PRECONDITION: 422},
    )
    assert declared_options(service.methods[0], HTTP_OPTIONS) == (CACHED.defaults, None)


def test_a_proto_without_options_gets_the_defaults() -> None:
    service = _service(None, None)
    assert declared_options(service.methods[0], HTTP_OPTIONS) == (None, None)
    assert effective_options(service.methods[0], HTTP_OPTIONS) == GatewayHttp()
    assert http_behavior(service.methods[0]) == HttpBehavior()


def test_a_method_value_equal_to_the_default_still_wins_when_present() -> None:
    service = _service(
        gateway_http_pb2.ServiceHttpBehavior(defaults=GatewayHttp(success_status=201)),
        GatewayHttp(success_status=0, cache_control=""),
    )
    merged = effective_options(service.methods[0], HTTP_OPTIONS)
    assert (merged.success_status, merged.HasField("cache_control")) == (0, True)
    assert http_behavior(service.methods[0]).success_status == 200


def test_merge_without_presence_takes_non_default_values_only() -> None:
    """Fields without presence (plain proto3 scalars) count as set when not default."""
    target = status_pb2.Status(code=3, message="kept")
    merge_with_presence(target, status_pb2.Status(code=5))
    assert (target.code, target.message) == (5, "kept")
    rule = http_pb2.HttpRule(get="/a", body="*")
    merge_with_presence(rule, http_pb2.HttpRule(post="/b"))
    assert (rule.WhichOneof("pattern"), rule.post, rule.body) == ("post", "/b", "*")


def test_deprecated_prefixes_are_read_without_trailing_slashes() -> None:
    defaults = gateway_http_pb2.ServiceHttpBehavior(
        deprecated_prefixes=[gateway_http_pb2.DeprecatedPrefix(prefix="/v0/", successor="/v1/")]
    )
    service = _service(defaults, None)
    assert http_behavior(service.methods[0]).deprecated_prefixes == (("/v0", "/v1"),)
