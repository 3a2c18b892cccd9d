"""gateway.openapi*: documents from the product's services, from a foreign test proto
(EchoService) and from a proto compiled here with our options; every document must
be valid OpenAPI 3.1."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import google.api
import grpc_tools
import httpx
import jsonschema_rs
import pytest
from google.api import httpbody_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from grpc_tools import protoc
from openapi_spec_validator import validate

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.openapi import api_name, build_document, documents_by_api
from gateway.openapi_schema import comments_from_files, duration_pattern
from gateway.standalone import load_services
from gateway.upstream import StreamCall, UnaryResult
from server.app import SERVICES
from server.domain.audit import FILTER_MAX
from server.domain.errors import InvalidArgument
from server.domain.jobs import BACKOFF_MAX_LIMIT_S, ID_PATTERN, PRIORITY_MAX, PRIORITY_MIN
from server.domain.sources import SOURCE_TYPE_PATTERN, _validate_registration
from server.http_surface import openapi_config
from server.identity.authorization_server.oauth2 import GRANT_TYPE
from tests.support import protos

REPO = Path(__file__).resolve().parents[3]
INCLUDES = (
    REPO / "proto",
    Path(google.api.__path__[0]).parent.parent,
    Path(grpc_tools.__file__).parent / "_proto",
)
Document = dict[str, Any]

# A proto with what the product's services do not (yet) use: anonymous methods,
# RFC 6749 errors, status overrides, permissions, binding tenancy, a body field,
# a component name that collides with our Error, nested types, two rules one OpenAPI
# path cannot tell apart, and bindings on the paths the documents are served at.
ACME = """
syntax = "proto3";
package acme.identity.v1;

import "google/api/annotations.proto";
import "google/api/field_behavior.proto";
import "google/api/httpbody.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/struct.proto";
import "gateway/v1/http.proto";
import "orchestrator/api/v1/options.proto";

// Issues tokens and starts processes.
service AcmeService {
  option (orchestrator.api.v1.policy_defaults) = {tenant: TENANT_MODE_BINDING};

  // Exchanges client credentials for an access token.
  //
  // (-- Internal: never logged. --)
  rpc Token(TokenRequest) returns (TokenResponse) {
    option (google.api.http) = {post: "/oauth/token" body: "*"};
    option (orchestrator.api.v1.policy) = {authentication: AUTHENTICATION_NONE};
    option (gateway.v1.http) = {
      cache_control: "no-store"
      error_format: ERROR_FORMAT_OAUTH
    };
  }
  // Starts one process instance.
  rpc Start(StartRequest) returns (StartResponse) {
    option (google.api.http) = {
      post: "/orchestra-api/process/{definition_id}/start"
      body: "variables"
    };
    option (orchestrator.api.v1.policy) = {permissions: ["access orchestra api"]};
    option (gateway.v1.http) = {
      success_status: 201
      error_status: [{code: FAILED_PRECONDITION, status: 422}]
      error_cache_control: "no-store"
    };
  }
  rpc Discovery(google.protobuf.Empty) returns (google.api.HttpBody) {
    option (google.api.http) = {get: "/.well-known/openapi"};
    option (orchestrator.api.v1.policy) = {authentication: AUTHENTICATION_NONE};
  }
  rpc Lookup(StartResponse.Token) returns (StartResponse.Token) {
    option (google.api.http) = {
      get: "/acme/{id=things/*}"
      additional_bindings: {get: "/acme/{id}"}
    };
  }
  rpc Upload(google.protobuf.Empty) returns (google.protobuf.Empty) {
    option (google.api.http) = {post: "/openapi/gwtest.json" body: "*"};
  }
}

message TokenRequest {
  // Always client_credentials.
  string grant_type = 1 [json_name = "grant_type", (google.api.field_behavior) = REQUIRED];
  string client_id = 2 [json_name = "client_id", (google.api.field_behavior) = REQUIRED];
  string client_secret = 3 [json_name = "client_secret", (google.api.field_behavior) = REQUIRED];
}

message TokenResponse {
  string access_token = 1 [json_name = "access_token"];
  int64 expires_in = 2 [json_name = "expires_in"];
  Error last_error = 3 [deprecated = true];
  TokenType token_type = 4 [json_name = "token_type"];
}

// How a token is bound.
enum TokenType {
  TOKEN_TYPE_UNSPECIFIED = 0;
  // A bearer token.
  TOKEN_TYPE_BEARER = 1;
  // A DPoP-bound token.
  TOKEN_TYPE_DPOP = 2;
}

message Error {
  string reason = 1;
}

message StartRequest {
  string definition_id = 1 [json_name = "definition_id"];
  google.protobuf.Struct variables = 2;
}

message StartResponse {
  message Token {
    string id = 1;
  }
  string instance_id = 1 [json_name = "instance_id", (google.api.field_behavior) = OUTPUT_ONLY];
  repeated Token tokens = 2 [(google.api.field_behavior) = REQUIRED];
}
"""


def _compile(tmp: Path, roots: Sequence[Path], files: Sequence[str]) -> Path:
    """A FileDescriptorSet with imports and comments, as `protoc` writes it."""
    out = tmp / f"set-{len(list(tmp.glob('set-*')))}.binpb"
    args = ["protoc", *(f"-I{root}" for root in (*roots, *INCLUDES))]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *files]) == 0
    return out


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openapi")


@pytest.fixture(scope="module")
def acme_set(tmp: Path) -> Path:
    source = tmp / "acme" / "identity" / "v1" / "acme.proto"
    source.parent.mkdir(parents=True)
    source.write_text(ACME)
    return _compile(tmp, [tmp], ["acme/identity/v1/acme.proto"])


@pytest.fixture(scope="module")
def acme(acme_set: Path) -> list[ServiceDescriptor]:
    return load_services(acme_set)


@pytest.fixture(scope="module")
def acme_doc(acme: list[ServiceDescriptor], acme_set: Path) -> Document:
    files = descriptor_pb2.FileDescriptorSet.FromString(acme_set.read_bytes()).file
    return build_document(
        bindings_for(acme),
        title="acme",
        version="v1",
        comments=comments_from_files(files),
        config=openapi_config(),
    )


def echo_service() -> ServiceDescriptor:
    service: ServiceDescriptor = protos.echo_pb2().DESCRIPTOR.services_by_name["EchoService"]
    return service


@functools.cache
def product_doc() -> Document:
    return build_document(
        bindings_for(SERVICES), title="product", version="v1", config=openapi_config()
    )


@functools.cache
def echo_doc() -> Document:
    return build_document(bindings_for([echo_service()]), title="echo", version="v1")


def operation(document: Document, method: str, path: str) -> Document:
    found: Document = document["paths"][path][method]
    return found


def params(op: Document, where: str) -> dict[str, Document]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


def schema(document: Document, name: str) -> Document:
    found: Document = document["components"]["schemas"][name]
    return found


# --- validity and determinism --------------------------------------------------------


@pytest.fixture(scope="module")
def documents(acme: list[ServiceDescriptor], acme_doc: Document) -> dict[str, Document]:
    services = [*SERVICES, echo_service(), *acme]
    everything = build_document(
        bindings_for(services), title="all", version="v1", servers=["https://x.test"]
    )
    per_api = documents_by_api(bindings_for(services))
    return {
        "product": product_doc(),
        "echo": echo_doc(),
        "acme-with-comments": acme_doc,
        "everything": everything,
        **{f"api-{name}": document for name, document in per_api.items()},
    }


@pytest.mark.parametrize(
    "name",
    ["product", "echo", "acme-with-comments", "everything", "api-jobengine", "api-gwtest"],
)
def test_document_is_valid_openapi_3_1(documents: dict[str, Document], name: str) -> None:
    assert documents[name]["openapi"] == "3.1.0"
    validate(documents[name])  # raises naming the first problem


def test_every_per_api_document_is_valid(documents: dict[str, Document]) -> None:
    apis = [name for name in documents if name.startswith("api-")]
    assert {"api-jobengine", "api-gwtest", "api-identity"} <= set(apis)
    for name in apis:
        validate(documents[name])


def test_no_two_paths_differ_only_in_parameter_names(documents: dict[str, Document]) -> None:
    for name, document in documents.items():
        shapes = [re.sub(r"\{[^}]*\}", "{}", path) for path in document["paths"]]
        assert len(shapes) == len(set(shapes)), name


def test_rules_one_path_cannot_tell_apart_are_listed(acme_doc: Document) -> None:
    assert acme_doc["paths"]["/acme/{id}"]["get"]["operationId"] == "AcmeService_Lookup"
    lookup = params(acme_doc["paths"]["/acme/{id}"]["get"], "path")["id"]
    assert lookup["schema"] == {"type": "string", "pattern": "^things/[^/]+$"}
    assert acme_doc["x-unrepresentable"] == ["GET /acme/{id} (acme.identity.v1.AcmeService.Lookup)"]


def test_output_is_deterministic() -> None:
    def encode() -> str:
        return json.dumps(
            build_document(bindings_for([echo_service(), *SERVICES]), title="t", version="1")
        )

    assert encode() == encode()
    names = list(json.loads(encode())["components"]["schemas"])
    assert names == sorted(names)


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("orchestrator.jobengine.v1", "jobengine"),
        ("gwtest.v1", "gwtest"),
        ("acme.identity.v1beta2", "identity"),
        ("acme.tools", "tools"),
        ("", "svc"),
    ],
    ids=["product", "short", "beta", "unversioned", "no-package"],
)
def test_api_name(package: str, expected: str) -> None:
    file = descriptor_pb2.FileDescriptorProto(name="x.proto", package=package, syntax="proto3")
    file.message_type.add(name="M")
    prefix = f".{package}." if package else "."
    file.service.add(name="Svc").method.add(
        name="Do", input_type=f"{prefix}M", output_type=f"{prefix}M"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    assert api_name(pool.FindServiceByName(f"{package}.Svc" if package else "Svc")) == expected


def test_documents_by_api_split_the_paths(acme: list[ServiceDescriptor]) -> None:
    per_api = documents_by_api(bindings_for([*SERVICES, echo_service(), *acme]))
    assert all(p.startswith("/v1/") for p in per_api["gwtest"]["paths"])
    assert per_api["gwtest"]["info"] == {"title": "gwtest API", "version": "v1"}
    assert "/jobengine/sources" in per_api["jobengine"]["paths"]
    assert not any(p.startswith("/v1/") for p in per_api["jobengine"]["paths"])


# --- the product: jobengine sources ----------------------------------------------------

READ = ["orch:read"]
OPERATE = ["orch:operate"]
TENANT = ["X-Stella-Tenant", "X-Stella-Project"]
AUDIT = ["X-Stella-Operator-Reason", "X-Stella-Operator-Ticket"]


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "status", "scopes", "headers"),
    [
        ("get", "/jobengine/sources", "SourcesService_ListSources", "200", READ,
         ["If-None-Match", *TENANT]),
        ("post", "/jobengine/sources", "SourcesService_RegisterSource", "201", OPERATE,
         [*TENANT, *AUDIT]),
        ("get", "/jobengine/sources/{sourceId}", "SourcesService_GetSource", "200", READ,
         ["If-None-Match", *TENANT]),
        ("post", "/jobengine/sources/{sourceId}/pause", "SourcesService_PauseSource", "200",
         OPERATE, [*TENANT, *AUDIT]),
        ("post", "/jobengine/sources/{sourceId}/resume", "SourcesService_ResumeSource", "200",
         OPERATE, [*TENANT, *AUDIT]),
        ("get", "/orchestrator/sources", "SourcesService_ListSources_1", "200", READ,
         ["If-None-Match", *TENANT]),
        ("post", "/orchestrator/sources/{sourceId}/pause", "SourcesService_PauseSource_1",
         "200", OPERATE, [*TENANT, *AUDIT]),
    ],
    ids=["list", "register", "get", "pause", "resume", "legacy-list", "legacy-pause"],
)  # fmt: skip
def test_source_operations(
    method: str, path: str, operation_id: str, status: str, scopes: list[str], headers: list[str]
) -> None:
    op = operation(product_doc(), method, path)
    assert op["operationId"] == operation_id
    assert op["tags"] == ["SourcesService"]
    assert min(op["responses"]) == status
    assert op["security"] == [{"oauth2": scopes}, {"dpop": scopes}]
    assert list(params(op, "header")) == headers
    required = [name for name, p in params(op, "header").items() if p.get("required")]
    # A token bound to a tenant may leave X-Stella-Tenant out (server/interceptors/tenancy.py).
    assert required == [h for h in headers if h == "X-Stella-Operator-Reason"]


IDENTIFIER = {
    "anyOf": [
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        {"type": "string", "maxLength": 0},
    ]
}


def test_header_schemas_are_the_rules_the_server_checks() -> None:
    op = operation(product_doc(), "post", "/jobengine/sources")
    assert {name: p["schema"] for name, p in params(op, "header").items()} == {
        "X-Stella-Tenant": IDENTIFIER,
        "X-Stella-Project": IDENTIFIER,
        "X-Stella-Operator-Reason": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "pattern": "[^ \\t]",
        },
        "X-Stella-Operator-Ticket": {"type": "string", "maxLength": 256},
    }
    tenant = params(op, "header")["X-Stella-Tenant"]
    assert "required" not in tenant
    assert "400 `TENANT_REQUIRED`" in tenant["description"]
    assert "X-StellaOps-Tenant" in tenant["description"]


def test_legacy_prefix_is_deprecated_and_says_so_in_headers() -> None:
    document = product_doc()
    for path, item in document["paths"].items():
        for method, op in item.items():
            legacy = path.startswith("/orchestrator/")
            assert op.get("deprecated", False) is legacy, (method, path)
            success = op["responses"][min(op["responses"])]
            assert ("Deprecation" in success["headers"]) is legacy
    legacy_404 = operation(document, "get", "/orchestrator/sources")["responses"]["404"]
    assert legacy_404 == {"$ref": "#/components/responses/Error404Deprecated"}
    assert document["components"]["responses"]["Error404Deprecated"]["headers"] == {
        "X-Stella-Trace-Id": {"$ref": "#/components/headers/X-Stella-Trace-Id"},
        "Deprecation": {"$ref": "#/components/headers/Deprecation"},
        "Link": {"$ref": "#/components/headers/Link"},
    }
    assert document["components"]["headers"]["Deprecation"]["schema"] == {
        "type": "string",
        "const": "true",
    }


def test_list_sources_query_parameters() -> None:
    op = operation(product_doc(), "get", "/jobengine/sources")
    # The domain's rules (server/domain/sources.py, pagination.py) refine the types.
    assert [(p["name"], p["schema"]) for p in params(op, "query").values()] == [
        ("sourceType", {"type": "string", "pattern": "^[a-z][a-z0-9._-]{0,63}$"}),
        ("enabled", {"type": "boolean"}),
        ("limit", {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**31 - 1}),
        ("continuationToken", {"type": "string"}),
    ]
    assert params(op, "query")["sourceType"]["description"] == (
        "Also accepted as `source_type`. An empty value is the same as none."
    )
    assert all(p["allowEmptyValue"] is True for p in params(op, "query").values())


NAMES = [
    "a", "nightly scan", "x" * 200, "x" * 201, "", " ", "a ", " a", "a\u00a0", "\u0085a",
    "a\u2003", "\u3000", "a\tb", "a\x7fb", "a\x1fb", "caf\u00e9", "\ufeffa", "a\u200bb",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:12] for n in NAMES])
def test_register_name_schema_accepts_what_the_domain_accepts(name: str) -> None:
    """The name's pattern is built from str.strip()'s blanks and RFC 5234 CTL, which
    server/domain/sources.py checks: the two agree on every edge."""
    document = product_doc()
    name_schema = schema(document, "RegisterSourceRequest")["properties"]["name"]
    try:
        _validate_registration(name, "webhook")
        accepted = True
    except InvalidArgument:
        accepted = False
    assert jsonschema_rs.validator_for(name_schema).is_valid(name) is accepted


def test_field_rules_come_from_the_domain() -> None:
    document = product_doc()
    register = schema(document, "RegisterSourceRequest")["properties"]
    assert register["sourceType"] == {
        "type": "string",
        "pattern": SOURCE_TYPE_PATTERN,
        "minLength": 1,
    }
    audit = params(operation(document, "get", "/jobengine/audit"), "query")
    assert {name: audit[name]["schema"].get("maxLength") for name in FILTER_MAX} == FILTER_MAX
    assert audit["limit"]["schema"]["minimum"] == 0
    assert audit["action"]["schema"]["pattern"] == "^[^\\u0000-\\u001f\\u007f]*$"
    grant = schema(document, "TokenRequest")["properties"]["grant_type"]
    assert grant["enum"] == [GRANT_TYPE]  # RFC 6749 §4.4, the one grant served


def test_cached_get_documents_etag_304_and_cache_control() -> None:
    responses = operation(product_doc(), "get", "/jobengine/sources/{sourceId}")["responses"]
    assert list(responses) == ["200", "304", "400", "401", "403", "404", "409", "429", "500", "503"]
    ok = responses["200"]
    assert ok["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Source"}}
    }
    assert ok["headers"]["Cache-Control"] == {
        "required": True,
        "schema": {"type": "string", "const": "private, max-age=60, stale-if-error=300"},
    }
    assert ok["headers"]["ETag"]["required"] is True
    assert responses["304"]["headers"] == ok["headers"]
    assert "content" not in responses["304"]
    assert responses["400"] == {"$ref": "#/components/responses/Error400"}


def test_path_parameter() -> None:
    op = operation(product_doc(), "get", "/jobengine/sources/{sourceId}")
    assert params(op, "path") == {
        "sourceId": {
            "name": "sourceId",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    }
    assert params(op, "query") == {}  # the only field is bound by the path


def test_register_body_is_json_only_and_required() -> None:
    """RegisterSourceRequest holds a message (schedule) a form cannot say: JSON only."""
    op = operation(product_doc(), "post", "/jobengine/sources")
    ref = {"schema": {"$ref": "#/components/schemas/RegisterSourceRequest"}}
    assert op["requestBody"] == {
        "content": {"application/json": ref},
        "required": True,
    }
    assert op["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Source"
    }
    assert {"413", "415"} <= set(op["responses"])
    assert schema(product_doc(), "RegisterSourceRequest")["required"] == ["name", "sourceType"]


def test_body_star_with_path_field_leaves_the_field_out() -> None:
    op = operation(product_doc(), "post", "/jobengine/sources/{sourceId}/pause")
    body = {"type": "object", "properties": {}, "additionalProperties": False}
    assert op["requestBody"] == {"content": {"application/json": {"schema": body}}}
    assert params(op, "query") == {}


def test_source_schema() -> None:
    assert schema(product_doc(), "Source") == {
        "type": "object",
        "properties": {
            "sourceId": {"type": "string", "readOnly": True},
            "name": {"type": "string", "minLength": 1},
            "sourceType": {"type": "string", "minLength": 1},
            "enabled": {"type": "boolean"},
            "paused": {"type": "boolean", "readOnly": True},
            "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
            "updatedAt": {"type": "string", "format": "date-time", "readOnly": True},
            "schedule": {"$ref": "#/components/schemas/Schedule"},  # scheduler sources
        },
        "required": ["name", "sourceType"],
        "additionalProperties": False,
    }
    assert schema(product_doc(), "ListSourcesResponse")["properties"] == {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Source"}},
        "continuationToken": {"type": "string"},
    }


def test_security_schemes_and_error_schema() -> None:
    components = product_doc()["components"]
    schemes = components["securitySchemes"]
    assert schemes["oauth2"]["flows"] == {
        "clientCredentials": {
            "tokenUrl": "/oauth/token",
            "scopes": {
                "orch:admin": "The `orch:admin` scope.",
                "orch:backfill": "The `orch:backfill` scope.",
                "orch:operate": "The `orch:operate` scope.",
                "orch:quota": "The `orch:quota` scope.",
                "orch:read": "The `orch:read` scope.",
            },
        }
    }
    assert schemes["dpop"]["type"] == "http"
    assert schemes["dpop"]["scheme"] == "DPoP"
    error = components["schemas"]["Error"]
    assert error["required"] == ["error", "code", "details"]
    assert "NOT_FOUND" in error["properties"]["code"]["enum"]
    assert components["responses"]["Error404"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
    }
    # OAuth-format methods (the token endpoint) answer with RFC 6749 bodies instead.
    assert components["schemas"]["OAuthError"]["required"] == ["error", "error_description"]
    token = operation(product_doc(), "post", "/oauth/token")
    assert token["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OAuthError"
    }
    sources = operation(product_doc(), "get", "/jobengine/sources")
    assert sources["responses"]["400"] == {"$ref": "#/components/responses/Error400"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/oauth/token", "TokenRequest"),
        ("/oauth/introspect", "IntrospectRequest"),
        ("/oauth/revoke", "RevokeRequest"),
    ],
    ids=["token", "introspect", "revoke"],
)
def test_request_bodies_are_closed_unless_unknown_names_are_ignored(
    path: str, message: str
) -> None:
    """A JSON body key that names no field is refused (400), so the schema is closed; the
    OAuth endpoints ignore unknown form parameters (allow_unknown_query_parameters, as
    RFC 6749 §3.2 asks), so their form schema is open."""
    document = product_doc()
    content = operation(document, "post", path)["requestBody"]["content"]
    assert content["application/json"] == {"schema": {"$ref": f"#/components/schemas/{message}"}}
    assert schema(document, message)["additionalProperties"] is False
    form = content["application/x-www-form-urlencoded"]["schema"]
    assert "additionalProperties" not in form
    assert form == {
        k: v for k, v in schema(document, message).items() if k != "additionalProperties"
    }
    register = operation(document, "post", "/jobengine/sources")["requestBody"]["content"]
    assert set(register) == {"application/json"}  # nested schedule: no form


# --- a foreign proto: EchoService ----------------------------------------------------


ECHO_OPERATIONS = [
    ("post", "/v1/echo", "EchoService_Echo"),
    ("get", "/v1/echo/{id}", "EchoService_Echo_1"),
    ("put", "/v1/echo/{id}/inner", "EchoService_Echo_2"),
    ("get", "/v1/echo/{id}/tags", "EchoService_Echo_3"),
    ("post", "/v1/echo/{id}:shout", "EchoService_Echo_5"),
    ("get", "/v1/kitchens/{id}", "EchoService_GetKitchen"),
    ("get", "/v1/kitchens/me", "EchoService_GetMyKitchen"),
    ("patch", "/v1/kitchens/{id}", "EchoService_UpdateKitchen"),
    ("delete", "/v1/kitchens/{id}", "EchoService_DeleteKitchen"),
    ("get", "/v1/{parent}/kitchens", "EchoService_ListKitchens"),
    ("get", "/v1/files/{path}", "EchoService_GetFile"),
    ("post", "/v1/upload", "EchoService_Upload"),
    ("post", "/v1/fail/{name}", "EchoService_Fail"),
    ("get", "/v1/count", "EchoService_Count"),
    ("post", "/v1/rooms/{room}:collect", "EchoService_Collect"),
    ("post", "/v1/rooms/{room}/inners:collect", "EchoService_Collect_1"),
    ("post", "/v1/rooms/{room}:chat", "EchoService_Chat"),
    ("get", "/v1/notes/{id}", "EchoService_GetNote"),
    ("patch", "/v1/notes/{id}", "EchoService_UpdateNote"),
    ("delete", "/v1/notes/{id}", "EchoService_DeleteNote"),
    ("post", "/v1/notes/{id}:reset", "EchoService_ResetNote"),
    ("get", "/v1/notes/{id}:check", "EchoService_CheckNote"),
]


def test_echo_paths_and_operation_ids() -> None:
    found = {
        (method, path, op["operationId"])
        for path, item in echo_doc()["paths"].items()
        for method, op in item.items()
        if method != "x-additionalOperations"
    }
    assert found == set(ECHO_OPERATIONS)
    search = echo_doc()["paths"]["/v1/echo/{id}"]["x-additionalOperations"]["SEARCH"]
    assert search["operationId"] == "EchoService_Echo_4"


def test_foreign_protos_get_defaults() -> None:
    document = echo_doc()
    for item in document["paths"].values():
        for op in item.values():
            assert "security" not in op
            assert "deprecated" not in op
    assert "securitySchemes" not in document["components"]
    assert min(operation(document, "get", "/v1/kitchens/{id}")["responses"]) == "200"


@pytest.mark.parametrize(
    ("method", "path", "name", "expected"),
    [
        ("get", "/v1/{parent}/kitchens", "parent",
         {"type": "string", "pattern": "^shelves/[^/]+$"}),
        ("get", "/v1/files/{path}", "path", {"type": "string", "pattern": "^[^/]+(?:/[^/]+)*$"}),
        ("post", "/v1/echo/{id}:shout", "id", {"type": "string", "minLength": 1}),
        ("patch", "/v1/kitchens/{id}", "id", {"type": "string", "minLength": 1}),
    ],
    ids=["multi-segment", "double-star", "custom-verb", "renamed-nested"],
)  # fmt: skip
def test_path_parameter_patterns(method: str, path: str, name: str, expected: Document) -> None:
    assert params(operation(echo_doc(), method, path), "path")[name]["schema"] == expected


def test_path_parameter_descriptions() -> None:
    shared = params(operation(echo_doc(), "patch", "/v1/kitchens/{id}"), "path")["id"]
    assert shared["description"] == "Sets `kitchen.id`."
    search = echo_doc()["paths"]["/v1/echo/{id}"]["x-additionalOperations"]["SEARCH"]
    deep = params(search, "path")["id"]
    assert deep["schema"] == {"type": "string", "pattern": "^rooms/[^/]+/items/[^/]+(?:/[^/]+)*$"}
    assert (
        deep["description"]
        == "Matches `rooms/*/items/**`; its `/` are sent unescaped. Sets `name`."
    )
    assert "name" not in params(search, "query")  # bound by the path, whatever it is called


def test_query_parameters_flatten_unbound_fields() -> None:
    query = params(operation(echo_doc(), "get", "/v1/echo/{id}"), "query")
    assert list(query) == [
        "name", "i32", "i64", "u32", "u64", "s32", "f64", "flt", "dbl", "flag", "data",
        "color", "tags", "numbers", "colors", "labels", "counters",
        "inner.label", "inner.count", "inner.child.label", "inner.child.count",
        "at", "ttl", "updateMask", "maybeName", "maybeCount", "maybeFlag", "optText",
        "customName", "choiceA", "choiceB", "maybeDouble", "maybeBytes",
    ]  # fmt: skip
    assert query["i64"]["schema"] == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]{1,19}$",
    }
    assert query["colors"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Color"},
    }
    assert query["labels"] == {
        "name": "labels",
        "in": "query",
        "description": "An empty value is the same as none.",
        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        "style": "deepObject",
        "explode": True,
        "allowEmptyValue": True,
    }
    assert query["maybeCount"]["schema"] == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]{1,19}$",
    }
    assert query["customName"]["description"] == (
        "Also accepted as `custom_json`. An empty value is the same as none."
    )
    # gateway/query.py leaves a field given once with an empty value unset.
    assert all(p["allowEmptyValue"] is True for p in query.values())
    assert query["at"]["schema"] == {"type": "string", "format": "date-time"}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("post", "/v1/echo", []),
        ("post", "/v1/echo/{id}:shout", []),
        ("patch", "/v1/kitchens/{id}", ["updateMask"]),
        ("get", "/v1/{parent}/kitchens", ["pageSize", "pageToken"]),
        ("get", "/v1/kitchens/me", []),
    ],
    ids=["body-star", "body-star-verb", "body-field-nested-path", "get", "empty-request"],
)
def test_query_parameters_skip_body_and_path(method: str, path: str, expected: list[str]) -> None:
    assert list(params(operation(echo_doc(), method, path), "query")) == expected


def test_a_body_field_and_its_children_are_no_query_parameters() -> None:
    query = list(params(operation(echo_doc(), "put", "/v1/echo/{id}/inner"), "query"))
    assert query[:3] == ["name", "i32", "i64"]
    assert not [name for name in query if name == "id" or name.startswith("inner")]


def test_request_bodies() -> None:
    document = echo_doc()
    kitchen = {"$ref": "#/components/schemas/Kitchen"}
    assert operation(document, "post", "/v1/echo")["requestBody"] == {
        "content": {"application/json": {"schema": kitchen}}
    }
    inner = operation(document, "put", "/v1/echo/{id}/inner")["requestBody"]
    assert inner == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Inner"}}}
    }
    patch = operation(document, "patch", "/v1/kitchens/{id}")["requestBody"]
    assert patch == {"content": {"application/json": {"schema": kitchen}}}
    shout = operation(document, "post", "/v1/echo/{id}:shout")["requestBody"]
    shout_schema = shout["content"]["application/json"]["schema"]
    assert "id" not in shout_schema["properties"]
    assert set(shout_schema["properties"]) == set(schema(document, "Kitchen")["properties"]) - {
        "id"
    }
    upload = operation(document, "post", "/v1/upload")["requestBody"]
    assert upload == {
        "required": True,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }


def test_response_bodies() -> None:
    document = echo_doc()

    def content(method: str, path: str) -> Document:
        found: Document = operation(document, method, path)["responses"]["200"]["content"]
        return found

    assert content("get", "/v1/echo/{id}/tags") == {
        "application/json": {"schema": {"type": "array", "items": {"type": "string"}}}
    }
    assert content("get", "/v1/files/{path}") == {
        "*/*": {"schema": {"type": "string", "format": "binary"}}
    }
    assert content("delete", "/v1/kitchens/{id}") == {
        "application/json": {"schema": {"type": "object", "additionalProperties": False}}
    }
    stream = content("get", "/v1/count")
    assert stream["application/x-ndjson"]["schema"]["properties"] == {
        "result": {"$ref": "#/components/schemas/Kitchen"},
        "error": {"$ref": "#/components/schemas/Error"},
    }
    assert "text/event-stream" in stream


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("i32", {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}),
        ("u32", {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}),
        ("i64", {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"}),
        ("f64", {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"}),
        ("dbl", {"anyOf": [{"type": "number", "format": "double"},
                           {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}),
        ("data", {"type": "string", "format": "byte", "contentEncoding": "base64"}),
        ("color", {"$ref": "#/components/schemas/Color"}),
        ("labels", {"type": "object", "additionalProperties": {"type": "string"}}),
        ("inners", {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}}),
        ("at", {"type": "string", "format": "date-time"}),
        ("ttl", {"type": "string", "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
                 "description": "Seconds with an `s` suffix, e.g. `1.5s`."}),
        ("updateMask", {"type": "string",
                        "description": "Comma-separated field paths in lowerCamelCase."}),
        ("maybeName", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        ("maybeCount", {"anyOf": [{"type": "string", "format": "int64",
                                   "pattern": "^-?[0-9]{1,19}$"}, {"type": "null"}]}),
        ("attrs", {"type": "object"}),
        ("anyValue", {}),
        ("listValue", {"type": "array"}),
        ("customName", {"type": "string"}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_kitchen_field_schemas(field: str, expected: Document) -> None:
    assert schema(echo_doc(), "Kitchen")["properties"][field] == expected


def test_enums_oneofs_and_recursion() -> None:
    document = echo_doc()
    assert schema(document, "Color") == {
        "type": "string",
        "enum": ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"],
    }
    kitchen = schema(document, "Kitchen")
    assert kitchen["not"] == {"anyOf": [{"required": ["choiceA", "choiceB"]}]}
    assert kitchen["description"] == "Oneof `choice`: at most one of `choiceA`, `choiceB`."
    assert "optText" in kitchen["properties"]  # a proto3 optional is no oneof choice
    assert schema(document, "Inner")["properties"]["child"] == {
        "$ref": "#/components/schemas/Inner"
    }


# --- our options on a proto compiled here (a pool of its own, with comments) ----------


def test_anonymous_oauth_endpoint(acme_doc: Document) -> None:
    op = operation(acme_doc, "post", "/oauth/token")
    assert op["security"] == []
    assert op["summary"] == "Exchanges client credentials for an access token."
    assert op["description"] == "Exchanges client credentials for an access token."
    ref = {"schema": {"$ref": "#/components/schemas/TokenRequest"}}
    assert op["requestBody"]["content"] == {
        "application/json": ref,
        "application/x-www-form-urlencoded": ref,
    }
    assert op["responses"]["401"] == {"$ref": "#/components/responses/OAuthError401"}
    assert acme_doc["components"]["responses"]["OAuthError401"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}
    }
    assert schema(acme_doc, "OAuthError")["required"] == ["error", "error_description"]
    assert schema(acme_doc, "TokenRequest")["properties"]["grant_type"] == {
        "type": "string",
        "minLength": 1,
        "description": "Always client_credentials.",
    }
    assert params(op, "header") == {}  # TENANT_MODE_BINDING reads no header


def test_overrides_permissions_and_body_field(acme_doc: Document) -> None:
    op = operation(acme_doc, "post", "/orchestra-api/process/{definition_id}/start")
    assert op["security"] == [{"oauth2": []}, {"dpop": []}]
    assert op["description"] == (
        "Starts one process instance.\n\nRequires the role permission `access orchestra api`."
    )
    assert "422" in op["responses"] and "201" in op["responses"]
    error = op["responses"]["422"]
    assert error["headers"]["Cache-Control"] == {
        "required": True,
        "schema": {"type": "string", "const": "no-store"},
    }
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert op["requestBody"] == {"content": {"application/json": {"schema": {"type": "object"}}}}
    created = op["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/StartResponse"}
    assert schema(acme_doc, "StartResponse")["properties"]["instance_id"]["readOnly"] is True


def test_colliding_component_names_use_full_names(acme_doc: Document) -> None:
    schemas = acme_doc["components"]["schemas"]
    assert "acme.identity.v1.Error" in schemas
    assert schemas["Error"]["required"] == ["error", "code", "details"]
    assert schemas["TokenResponse"]["properties"]["lastError"] == {
        "$ref": "#/components/schemas/acme.identity.v1.Error",
        "deprecated": True,
    }


def test_nested_messages_and_enums(acme_doc: Document) -> None:
    schemas = acme_doc["components"]["schemas"]
    assert schemas["StartResponse"]["properties"]["tokens"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/StartResponse.Token"},
        "minItems": 1,
    }
    assert schemas["StartResponse"]["required"] == ["tokens"]
    assert schemas["StartResponse.Token"] == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "additionalProperties": False,
    }
    assert schemas["TokenType"] == {
        "type": "string",
        "enum": ["TOKEN_TYPE_UNSPECIFIED", "TOKEN_TYPE_BEARER", "TOKEN_TYPE_DPOP"],
        "description": "How a token is bound.\n\n"
        "- `TOKEN_TYPE_BEARER`: A bearer token.\n"
        "- `TOKEN_TYPE_DPOP`: A DPoP-bound token.",
    }


def test_comments_become_descriptions(tmp: Path, acme_doc: Document) -> None:
    assert acme_doc["tags"] == [
        {"name": "AcmeService", "description": "Issues tokens and starts processes."}
    ]
    product = _compile(tmp, [REPO / "proto"], ["orchestrator/jobengine/v1/sources_service.proto"])
    files = descriptor_pb2.FileDescriptorSet.FromString(product.read_bytes()).file
    comments = comments_from_files(files)
    document = build_document(bindings_for(SERVICES), title="t", version="v1", comments=comments)
    validate(document)
    op = operation(document, "get", "/jobengine/sources")
    assert op["summary"] == "Lists the tenant's sources ordered by (name, sourceId)."
    assert schema(document, "Source")["properties"]["sourceId"] == {
        "type": "string",
        "readOnly": True,
        "description": "Output only. Server-assigned identifier.",
    }
    assert "Page size" in params(op, "query")["limit"]["description"]


# --- serving: the gateway answers the documents unless a binding claims the path -------


class _Upstream:
    """Answers every unary call with `{data: "from the binding"}` as an HttpBody."""

    async def unary(
        self, method: str, request: Message, response_type: type[Message], **_: Any
    ) -> UnaryResult:
        return UnaryResult(
            httpbody_pb2.HttpBody(content_type="text/plain", data=b"from the binding")
        )

    async def stream(self, *_: Any, **__: Any) -> StreamCall:
        raise NotImplementedError

    async def close(self) -> None:
        return None


async def _get(gateway: Gateway, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(kwargs.pop("method", "GET"), path, **kwargs)


async def test_documents_are_served_with_etag() -> None:
    gateway = Gateway(bindings_for([echo_service()]), _Upstream())
    response = await _get(gateway, "/openapi/gwtest.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    expected = documents_by_api(bindings_for([echo_service()]))["gwtest"]
    assert response.json() == json.loads(json.dumps(expected))
    etag = response.headers["etag"]
    again = await _get(gateway, "/openapi/gwtest.json", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    discovery = await _get(gateway, "/.well-known/openapi")
    assert discovery.json() == {
        "openapi": "/openapi.json",
        "apis": [{"name": "gwtest", "url": "/openapi/gwtest.json"}],
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/.well-known/openapi", 200, b"from the binding"),
        ("GET", "/openapi/gwtest.json", 405, None),
        ("HEAD", "/openapi/gwtest.json", 405, None),
        ("GET", "/openapi/nothing.json", 404, None),
        ("POST", "/openapi.json", 405, None),  # the document exists: Allow GET, HEAD
        ("GET", "/openapi.json/", 404, None),
    ],
    ids=[
        "binding-wins",
        "other-method-binding-wins",
        "head-too",
        "unknown-api",
        "post",
        "trailing-slash",
    ],
)
async def test_bindings_win_and_unknown_paths_fall_through(
    acme: list[ServiceDescriptor], method: str, path: str, status: int, body: bytes | None
) -> None:
    gateway = Gateway(bindings_for([*acme, echo_service()]), _Upstream())
    response = await _get(gateway, path, method=method)
    assert response.status_code == status
    if body is not None:
        assert response.content == body
    elif method != "HEAD":
        assert response.json()["code"] in ("NOT_FOUND", "UNIMPLEMENTED")
    assert (await _get(gateway, "/openapi.json")).status_code == 200


@pytest.mark.parametrize(
    ("maximum", "positive", "accepted", "refused"),
    [
        (
            86400,
            True,
            ["0.000000001s", "1s", "86399.999999999s", "86400s", "86400.000s", "000000086400s"],
            ["0s", "0.000s", "86400.000000001s", "86401s", "-1s", "0000000086400s", "1.5"],
        ),
        (86400, False, ["0s", "0.0s", "00s", "300s", "86400s"], ["86401s", "-0s", "100000s"]),
        (5, False, ["0s", "4.9s", "5s", "5.0s"], ["5.1s", "6s", "10s"]),
    ],
    ids=["positive-day", "day", "one-digit"],
)
def test_duration_pattern_is_the_range_the_gateway_reads(
    maximum: int, positive: bool, accepted: list[str], refused: list[str]
) -> None:
    pattern = re.compile(duration_pattern(maximum, positive=positive))
    assert [value for value in accepted if not pattern.search(value)] == []
    assert [value for value in refused if pattern.search(value)] == []


def test_job_and_quota_fields_carry_the_domain_rules() -> None:
    document = documents_by_api(bindings_for(SERVICES), config=openapi_config())["jobengine"]
    schemas = document["components"]["schemas"]
    job, quota, backoff = schemas["Job"], schemas["Quota"], schemas["Backoff"]
    assert job["properties"]["jobType"]["pattern"] == SOURCE_TYPE_PATTERN
    assert job["properties"]["priority"]["minimum"] == PRIORITY_MIN
    assert job["properties"]["priority"]["maximum"] == PRIORITY_MAX
    assert backoff["properties"]["maxDelay"]["pattern"] == duration_pattern(
        int(BACKOFF_MAX_LIMIT_S), positive=True
    )
    assert "burst" in quota["required"]
    assert quota["properties"]["burst"]["minimum"] == 1
    # The listing's filters are checked as the job's own fields are (jobs.list_jobs).
    filters = params(operation(document, "get", "/jobengine/jobs"), "query")
    assert filters["sourceId"]["schema"]["pattern"] == ID_PATTERN
    assert filters["jobType"]["schema"]["pattern"] == SOURCE_TYPE_PATTERN


# --- links (OpenAPI 3.1 §4.8.20) --------------------------------------------------------

# Creators and what continues their collections: a created id (bodies with and
# without response_body), a `:verb` creator, a nested creator whose parent id is its
# own path's, a path under another collection, a variable nobody gives, a list, a
# stream, a bodiless answer, and a deprecated prefix whose twins link among themselves.
SHOP = """
syntax = "proto3";
package acme.shop.v1;

import "google/api/annotations.proto";
import "google/protobuf/empty.proto";
import "gateway/v1/http.proto";

service ShopService {
  option (gateway.v1.http_defaults) = {
    deprecated_prefixes: [{prefix: "/v0" successor: "/v1"}]
  };
  rpc CreateShelf(CreateShelfRequest) returns (CreateShelfResponse) {
    option (google.api.http) = {
      post: "/v1/shelves" body: "shelf" response_body: "shelf"
    };
    option (gateway.v1.http) = {success_status: 201};
  }
  rpc ImportShelf(Shelf) returns (Shelf) {
    option (google.api.http) = {post: "/v1/shelves:import" body: "*"};
  }
  rpc ListShelves(google.protobuf.Empty) returns (ListShelvesResponse) {
    option (google.api.http) = {get: "/v1/shelves"};
  }
  rpc WatchShelves(google.protobuf.Empty) returns (stream Shelf) {
    option (google.api.http) = {get: "/v1/shelves:watch"};
  }
  rpc GetShelf(ShelfRef) returns (Shelf) {
    option (google.api.http) = {get: "/v1/shelves/{shelf_id}"};
  }
  rpc CloseShelf(ShelfRef) returns (Shelf) {
    option (google.api.http) = {post: "/v1/shelves/{shelf_id}:close" body: "*"};
  }
  rpc DeleteShelf(ShelfRef) returns (Shelf) {
    option (google.api.http) = {delete: "/v1/shelves/{shelf_id}"};
    option (gateway.v1.http) = {success_status: 204};
  }
  rpc CreateBook(Book) returns (Book) {
    option (google.api.http) = {post: "/v1/shelves/{shelf_id}/books" body: "*"};
  }
  rpc GetBook(Book) returns (Book) {
    option (google.api.http) = {get: "/v1/shelves/{shelf_id}/books/{book_id}"};
  }
  rpc GetCopy(Copy) returns (Copy) {
    option (google.api.http) = {
      get: "/v1/shelves/{shelf_id}/books/{book_id}/copies/{copy_id}"
    };
  }
  rpc GetStock(ShelfRef) returns (Shelf) {
    option (google.api.http) = {get: "/v1/stock/{shelf_id}"};
  }
}

message Shelf {
  string shelf_id = 1;
  string name = 2;
  repeated string tags = 3;
  Book first = 4;
}
message ShelfRef {
  string shelf_id = 1;
}
message CreateShelfRequest {
  Shelf shelf = 1;
}
message CreateShelfResponse {
  Shelf shelf = 1;
}
message ListShelvesResponse {
  repeated Shelf shelves = 1;
  string next_page_token = 2;
}
message Book {
  string shelf_id = 1;
  string book_id = 2;
}
message Copy {
  string shelf_id = 1;
  string book_id = 2;
  string copy_id = 3;
}
"""


@pytest.fixture(scope="module")
def shop_doc(tmp: Path) -> Document:
    source = tmp / "acme" / "shop" / "v1" / "shop.proto"
    source.parent.mkdir(parents=True)
    source.write_text(SHOP)
    services = load_services(_compile(tmp, [tmp], ["acme/shop/v1/shop.proto"]))
    return build_document(bindings_for(services), title="shop", version="v1")


def links(document: Document) -> dict[tuple[str, str, str], dict[str, Document]]:
    """(method, path, status) -> {operationId: parameters} of every response with links."""
    return {
        (method, path, status): {
            name: {"operationId": link["operationId"], **link["parameters"]}
            for name, link in response["links"].items()
        }
        for path, item in document["paths"].items()
        for method, op in item.items()
        for status, response in op["responses"].items()
        if "links" in response
    }


def test_a_created_id_links_to_the_operations_of_its_collection(shop_doc: Document) -> None:
    validate(shop_doc)
    ids = {
        (method, path): op["operationId"]
        for path, item in shop_doc["paths"].items()
        for method, op in item.items()
    }

    def expected(prefix: str) -> dict[tuple[str, str, str], dict[str, Document]]:
        def to(method: str, path: str, **parameters: str) -> tuple[str, Document]:
            target = ids[method, prefix + path]
            return target, {"operationId": target, **parameters}

        shelf = "$response.body#/shelfId"
        from_shelf = dict(
            [
                to("get", "/shelves/{shelfId}", shelfId=shelf),
                to("delete", "/shelves/{shelfId}", shelfId=shelf),
                to("post", "/shelves/{shelfId}:close", shelfId=shelf),
                to("post", "/shelves/{shelfId}/books", shelfId=shelf),
            ]
        )
        book = dict(
            [
                to(
                    "get",
                    "/shelves/{shelfId}/books/{bookId}",
                    shelfId="$request.path.shelfId",
                    bookId="$response.body#/bookId",
                )
            ]
        )
        return {
            ("post", f"{prefix}/shelves", "201"): from_shelf,
            ("post", f"{prefix}/shelves:import", "200"): from_shelf,
            ("post", f"{prefix}/shelves/{{shelfId}}/books", "200"): book,
        }

    assert links(shop_doc) == {**expected("/v1"), **expected("/v0")}
    assert ids["get", "/v0/shelves/{shelfId}"] != ids["get", "/v1/shelves/{shelfId}"]


def test_product_creators_link_to_their_resources() -> None:
    found = links(product_doc())
    quota = {"quotaId": "$response.body#/quotaId"}
    for prefix, suffix in (("/jobengine", ""), ("/orchestrator", "_1")):
        methods = ("DeleteQuota", "GetQuota", "PauseQuota", "ResumeQuota", "UpdateQuota")
        assert found["post", f"{prefix}/quotas", "201"] == {
            f"QuotasService_{m}{suffix}": {"operationId": f"QuotasService_{m}{suffix}", **quota}
            for m in methods
        }
        job = {"jobId": "$response.body#/jobId"}
        from_job = {
            f"JobsService_{m}{suffix}": {"operationId": f"JobsService_{m}{suffix}", **job}
            for m in ("CancelJob", "GetJob", "ReplayJob")
        }
        # 201 enqueued, 200 found by its idempotency key: the same job either way
        assert found["post", f"{prefix}/jobs", "201"] == from_job
        assert found["post", f"{prefix}/jobs", "200"] == from_job
        backfill = {"backfillId": "$response.body#/backfillId"}
        assert found["post", f"{prefix}/backfills", "201"] == {
            f"BackfillsService_{m}{suffix}": {
                "operationId": f"BackfillsService_{m}{suffix}",
                **backfill,
            }
            for m in ("CancelBackfill", "GetBackfill")
        }
        pack_run = {"packRunId": "$response.body#/packRunId"}
        assert found["post", f"{prefix}/pack-runs", "201"] == {
            f"PackRunsService_{m}{suffix}": {
                "operationId": f"PackRunsService_{m}{suffix}",
                **pack_run,
            }
            for m in ("CancelPackRun", "GetPackRun", "RetryPackRun")
        }
    assert {path for _, path, _ in found} == {
        f"{prefix}/{collection}"
        for prefix in ("/jobengine", "/orchestrator")
        for collection in ("backfills", "jobs", "pack-runs", "quotas", "sources")
    }
