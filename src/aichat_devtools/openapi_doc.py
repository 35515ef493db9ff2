"""The REST surface as an OpenAPI 2.0 document: grpc-gateway's protoc-gen-swagger, finished.

``make gen`` runs protoc with Debian's ``protoc-gen-swagger`` (golang-grpc-gateway) through
:func:`plugin_main`, then :func:`finish` on its output. The generator reads the contract's
``google.api.http`` rules; what it leaves as grpc-gateway would serve it is corrected to
what Envoy's transcoder actually serves:

- path templates: ``/v1/chat/{name=sessions/*}`` is not an OpenAPI path (a slash cannot
  travel in a path parameter: Envoy rejects escaped slashes), so each ``*`` of a resource
  pattern becomes a parameter of its own: ``/v1/chat/sessions/{session}``;
- server streams are Server-Sent Events (``text/event-stream``), not grpc-gateway's
  newline-delimited ``{"result": …}`` objects; ExportSession answers the file itself;
- every error is a JSON ``google.rpc.Status`` (the ``default`` response), from the
  backend and from Envoy alike;
- a bearer token on every call.

The document is committed as ``gen/aichat.openapi.json``; Envoy serves it at
``/v1/chat/openapi.json`` without a token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

SWAGGER_PLUGIN = "/usr/bin/protoc-gen-swagger"
TITLE = "aichat REST API (through Envoy)"
# The resource collection before a `*` names the parameter (sessions/* → {session}).
_SINGULAR = {
    "sessions": "session",
    "messages": "message",
    "turns": "turn",
    "toolServers": "toolServer",
    "tools": "tool",
    "rateLimitBypasses": "rateLimitBypass",
}
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")
_VERBS = ("get", "put", "post", "delete", "patch")


def plugin_main() -> None:
    """protoc's plugin protocol around protoc-gen-swagger.

    Its 1.x release predates proto3 ``optional`` and does not declare support for it, so
    protoc refuses to run it on our files; it handles such a field as the one-field oneof it
    is in the descriptor. This says so on its behalf and changes nothing else.
    """
    request = sys.stdin.buffer.read()
    done = subprocess.run([SWAGGER_PLUGIN], input=request, capture_output=True, check=False)
    if done.returncode != 0:
        sys.stderr.buffer.write(done.stderr)
        raise SystemExit(done.returncode)
    response = plugin_pb2.CodeGeneratorResponse.FromString(done.stdout)
    response.supported_features |= plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    sys.stdout.buffer.write(response.SerializeToString())


def _rules(descriptor_set: Path) -> dict[tuple[str, str], tuple[str, bool, bool]]:
    """(verb, template with bare variables) → (template, server streaming, HttpBody out)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    found: dict[tuple[str, str], tuple[str, bool, bool]] = {}
    for file in files.file:
        if not file.package.startswith("aichat."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                body_out = method.output_type == ".google.api.HttpBody"
                for one in [rule, *rule.additional_bindings]:
                    verb, template = _verb_and_path(one)
                    found[(verb, _bare(template))] = (template, method.server_streaming, body_out)
    return found


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None or kind == "custom":
        raise ValueError(f"unsupported HTTP rule {rule}")
    return kind, str(getattr(rule, kind))


def _bare(template: str) -> str:
    """Variables without their patterns, as the generator sometimes prints them."""
    return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", template)


def openapi_path(template: str) -> tuple[str, dict[str, list[str]]]:
    """``/v1/chat/{name=sessions/*}:export`` → (``/v1/chat/sessions/{session}:export``,
    {"name": ["session"]}): the path, and which parameters each field's value is made of."""
    made_of: dict[str, list[str]] = {}

    def expand(match: re.Match[str]) -> str:
        field, pattern = match.group(1), match.group(2) or "*"
        parts = pattern.split("/")
        names: list[str] = []
        out: list[str] = []
        for index, part in enumerate(parts):
            if part == "*":
                before = parts[index - 1] if index else field.rsplit(".", 1)[-1]
                name = _SINGULAR.get(before, before)
                names.append(name)
                out.append("{" + name + "}")
            elif part == "**":
                raise ValueError(f"{template}: ** is not supported")
            else:
                out.append(part)
        made_of[field] = names
        return "/".join(out)

    return _VARIABLE.sub(expand, template), made_of


def _status_response() -> dict[str, Any]:
    return {
        "description": "An error: a google.rpc.Status (code is the gRPC code; details carry "
        "ErrorInfo with the reason, RetryInfo, BadRequest).",
        "schema": {"$ref": "#/definitions/rpcStatus"},
    }


def finish(swagger: dict[str, Any], descriptor_set: Path) -> dict[str, Any]:
    rules = _rules(descriptor_set)
    paths: dict[str, Any] = {}
    for generated_path, operations in swagger["paths"].items():
        for verb, operation in operations.items():
            if verb not in _VERBS:
                continue
            key = (verb, _bare(generated_path))
            if key not in rules:
                raise ValueError(f"no HTTP rule for {verb} {generated_path}")
            template, streaming, body_out = rules[key]
            path, made_of = openapi_path(template)
            params = [
                p
                for p in operation.get("parameters", [])
                if not (p.get("in") == "path" and p["name"] in made_of)
            ]
            path_params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "type": "string",
                    "pattern": "^[^/]+$",
                    "description": f"The {name} id (`{field}` is made of the path's ids).",
                }
                for field, names in made_of.items()
                for name in names
            ]
            operation["parameters"] = path_params + params
            ok = operation["responses"]["200"]
            if body_out:
                # The format's type; errors are JSON like everywhere.
                operation["produces"] = ["text/plain", "text/markdown", "application/json"]
                ok.pop("schema", None)
                ok["description"] = "The export itself (its format's content type)."
            elif streaming:
                # A refusal before the first event is a JSON google.rpc.Status.
                operation["produces"] = ["text/event-stream", "application/json"]
                item = ok.pop("schema", {}).get("$ref", "")
                ok["description"] = (
                    "Server-Sent Events: one `data: {json}` line per event, each event a "
                    f"{item.rsplit('/', 1)[-1] or 'message'}, sent as produced."
                )
                ok["schema"] = {"type": "string"}
            operation["responses"]["default"] = _status_response()
            paths.setdefault(path, {})[verb] = operation
    swagger["paths"] = dict(sorted(paths.items()))
    swagger["info"] = {
        "title": TITLE,
        "version": "v1",
        "description": "Generated from proto/aichat/v1 by protoc-gen-swagger (make gen). "
        "Every call needs `Authorization: Bearer <token>`.",
    }
    swagger["schemes"] = ["http", "https"]
    swagger["securityDefinitions"] = {
        "bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}
    }
    swagger["security"] = [{"bearer": []}]
    return swagger


def main(argv: list[str] | None = None) -> int:
    """``python -m aichat_devtools.openapi_doc GENERATED DESCRIPTOR_SET OUT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    generated, descriptors, out = (Path(a) for a in args)
    document = finish(json.loads(generated.read_text()), descriptors)
    out.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
