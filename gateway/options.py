"""The one reader of per-method proto options: service defaults refined by the method.

`effective_options(method, kind)` is the single merge every consumer calls (the
gateway for its HTTP behaviour, the server for its security policy, the OpenAPI
generator through both). The merge is field by field, with presence:

- a singular field the method sets wins (proto3 `optional` fields have presence,
  so a method's `etag: false` switches off its service's `etag: true`); a field
  without presence counts as set when it is not its default;
- a repeated or map field the method sets replaces the service's, whole: an
  override list is never appended to the inherited one;
- a method without the option inherits the service defaults; neither gives the
  message's defaults.

Descriptors built from a FileDescriptorSet live in their own pool, where an
extension may be an unknown field of the options message; re-parsing the serialized
options against the options class the extension extends (whose pool knows it)
recovers it. A foreign proto simply has none of the options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

Options = TypeVar("Options", bound=Message)  # the option message a method carries
ServiceOptions = TypeVar("ServiceOptions", bound=Message)  # what its service carries
Extended = TypeVar("Extended", bound=Message)  # MethodOptions, ServiceOptions, FieldOptions
Value = TypeVar("Value", bound=Message)  # an extension's message type


@dataclass(frozen=True, slots=True)
class OptionKind(Generic[Options, ServiceOptions]):
    """One kind of per-method option: the method extension, the service extension and
    where in the service's value the method defaults are (`defaults`; the value itself
    when the service carries the same message)."""

    method: _ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, Options]
    service: _ExtensionFieldDescriptor[descriptor_pb2.ServiceOptions, ServiceOptions]
    defaults: Callable[[ServiceOptions], Options] | None = None


def read_extension(
    options: Extended, extension: _ExtensionFieldDescriptor[Extended, Value]
) -> Value | None:
    """The value of `extension` in descriptor `options`, or None when absent (or, for a
    repeated extension, empty), from any descriptor pool (see the module docstring)."""
    found: Value | None
    try:
        found = _extension_value(options, extension)
    except KeyError:  # the options message's pool does not know the extension
        found = None
    if found is not None or not options.ByteSize():
        return found
    reparsed = _message_class(extension.containing_type).FromString(options.SerializeToString())
    found = _extension_value(reparsed, extension)
    return found


def _message_class(descriptor: Descriptor | None) -> type[Message]:
    """The generated class of a message type of the default pool."""
    if descriptor is None:
        raise TypeError("not a message type")
    found: type[Message] = message_factory.GetMessageClass(descriptor)
    return found


def _extension_value(options: Message, extension: Any) -> Any:
    if extension.is_repeated:
        values = options.Extensions[extension]
        return values if len(values) else None
    return options.Extensions[extension] if options.HasExtension(extension) else None


def declared_options(
    method: MethodDescriptor, kind: OptionKind[Options, ServiceOptions]
) -> tuple[Options | None, Options | None]:
    """(service defaults, the method's own), each None where the proto says nothing."""
    service_value = read_extension(method.containing_service.GetOptions(), kind.service)
    defaults: Options | None
    if service_value is None:
        defaults = None
    elif kind.defaults is not None:
        defaults = kind.defaults(service_value)
    else:  # the service carries the method's own message
        defaults = cast(Options, service_value)
    return defaults, read_extension(method.GetOptions(), kind.method)


def effective_options(
    method: MethodDescriptor, kind: OptionKind[Options, ServiceOptions]
) -> Options:
    """The method's options of `kind` after its service's defaults, merged with presence
    (see the module docstring). Always a fresh message of the method extension's type."""
    defaults, own = declared_options(method, kind)
    merged = cast(Options, _message_class(kind.method.message_type)())
    if defaults is not None:
        merged.CopyFrom(defaults)
    if own is not None:
        merge_with_presence(merged, own)
    return merged


def merge_with_presence(target: Message, own: Message) -> None:
    """Refine `target` by the fields `own` sets: singular fields with presence when
    present (without presence when not default), repeated and map fields replaced
    whole when not empty. Message fields are replaced, not merged."""
    for field in own.DESCRIPTOR.fields:
        name = field.name
        value = getattr(own, name)
        if field.is_repeated:
            if len(value):
                target.ClearField(name)
                getattr(target, name).MergeFrom(value)
        elif field.has_presence and not own.HasField(name):
            continue
        elif field.message_type is not None:
            getattr(target, name).CopyFrom(value)
        elif field.has_presence or value != field.default_value:
            setattr(target, name, value)


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    """The method's google.api.http rule, as the generated HttpRule class."""
    rule = read_extension(method.GetOptions(), annotations_pb2.http)
    if rule is None or isinstance(rule, http_pb2.HttpRule):
        return rule
    return http_pb2.HttpRule.FromString(rule.SerializeToString())
