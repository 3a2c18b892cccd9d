"""Start-up validation: every bad HttpRule is refused naming service, method, template."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from gateway.app import Gateway, GatewayConfig
from gateway.bindings import BindingError, bindings_for
from gateway.inprocess import InProcessUpstream

_F = descriptor_pb2.FieldDescriptorProto


def _service(*rules: http_pb2.HttpRule) -> ServiceDescriptor:
    """A fresh pool with `bad.v1.Svc`, one method per rule, over a request with a
    string, a repeated, a map and a message field."""
    file = descriptor_pb2.FileDescriptorProto(
        name="bad/v1/svc.proto", package="bad.v1", syntax="proto3"
    )
    request = file.message_type.add(name="Req")
    request.field.add(name="id", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(name="tags", number=2, type=_F.TYPE_STRING, label=_F.LABEL_REPEATED)
    entry = request.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(
        name="labels",
        number=3,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".bad.v1.Req.LabelsEntry",
    )
    request.field.add(
        name="inner",
        number=4,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_OPTIONAL,
        type_name=".bad.v1.Req",
    )
    service = file.service.add(name="Svc")
    for index, rule in enumerate(rules):
        method = service.method.add(
            name=f"M{index}", input_type=".bad.v1.Req", output_type=".bad.v1.Req"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("bad.v1.Svc")


BAD_RULES = [
    (http_pb2.HttpRule(get="/v1/{id"), "unclosed '{'"),
    (http_pb2.HttpRule(get="v1/items"), "must start with '/'"),
    (http_pb2.HttpRule(get="/v1/{missing}"), "path variable 'missing' names no field"),
    (http_pb2.HttpRule(get="/v1/{tags}"), "path variable 'tags' names a repeated field"),
    (http_pb2.HttpRule(get="/v1/{labels}"), "path variable 'labels' names a map field"),
    (http_pb2.HttpRule(get="/v1/{inner}"), "path variable 'inner' names a message field"),
    (http_pb2.HttpRule(get="/v1/{inner.nope}"), "path variable 'inner.nope' names no field"),
    (http_pb2.HttpRule(post="/v1/x", body="nope"), "body 'nope' names no field of bad.v1.Req"),
    (http_pb2.HttpRule(get="/v1/x", response_body="nope"), "response_body 'nope' names no field"),
    (http_pb2.HttpRule(get="/v1/{id}/{id}"), "appears twice"),
]


@pytest.mark.parametrize(("rule", "reason"), BAD_RULES, ids=[r for _, r in BAD_RULES])
def test_bad_rule_is_refused_naming_method_and_template(
    rule: http_pb2.HttpRule, reason: str
) -> None:
    with pytest.raises(BindingError) as err:
        list(bindings_for([_service(rule)]))
    kind = rule.WhichOneof("pattern")
    assert str(err.value).startswith(f"bad.v1.Svc.M0 ({getattr(rule, str(kind))}): ")
    assert reason in str(err.value)


def test_conflicting_routes_are_refused_at_start_up() -> None:
    service = _service(
        http_pb2.HttpRule(get="/v1/items/{id}"), http_pb2.HttpRule(get="/v1/items/{inner.id}")
    )
    with pytest.raises(BindingError) as err:
        # No channel: grpc.aio outside a running loop makes an event loop nobody closes.
        Gateway(bindings_for([service]), InProcessUpstream({}), GatewayConfig())
    assert str(err.value).startswith("bad.v1.Svc.M1 (/v1/items/{inner.id}): ")
    assert "conflicts with GET '/v1/items/{id}'" in str(err.value)


def test_additional_bindings_are_flattened_with_their_index() -> None:
    rule = http_pb2.HttpRule(get="/v1/a/{id}")
    rule.additional_bindings.add(post="/v1/b", body="*")
    rule.additional_bindings.add(custom=http_pb2.CustomHttpPattern(kind="search", path="/v1/c"))
    found = [
        (b.index, b.http_method, b.template.source, b.body_all)
        for b in bindings_for([_service(rule)])
    ]
    assert found == [
        (0, "GET", "/v1/a/{id}", False),
        (1, "POST", "/v1/b", True),
        (2, "SEARCH", "/v1/c", False),
    ]


def test_methods_without_rules_are_not_bound() -> None:
    assert list(bindings_for([_service()])) == []
