"""gen/rest_fields.lua: Envoy refuses a REST body field the contract does not have.

Envoy's JSON transcoder drops JSON fields it cannot map, so ``{"txt": "hi"}`` reached the
backend as an empty message ("text must not be empty") and a misspelt option was ignored
without a word. The transcoder has no option to refuse them, so a Lua filter in front of it
does: for each HTTP rule with a body, the top-level keys the body may have (each field's
JSON name and its proto name, as the proto3 JSON parser accepts both), and a 400 naming the
first key that is none of them. Nested objects are the transcoder's to check.

``make gen`` writes the file from the descriptor set; ``make check-gen`` compares it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from aichat_devtools.openapi_doc import openapi_path

_LUA_MAGIC = re.compile(r"([\^\$\(\)\%\.\[\]\*\+\-\?])")

_SCANNER = r"""
-- The top-level keys of a JSON object, or nil when the body is not one (the transcoder
-- then says what is wrong with it). Strings are skipped with string.find, so a large
-- base64 attachment costs one search, not a loop per character.
local function top_level_keys(s)
  local start = string.find(s, "%S")
  if start == nil or string.sub(s, start, start) ~= "{" then
    return nil
  end
  local keys, depth, pos, expect_key = {}, 0, start, false
  while true do
    local j = string.find(s, '["{}%[%],]', pos)
    if j == nil then
      return keys
    end
    local c = string.sub(s, j, j)
    if c == '"' then
      local k = j + 1
      while true do
        local e = string.find(s, '["\\]', k)
        if e == nil then
          return nil
        end
        if string.sub(s, e, e) == "\\" then
          k = e + 2
        else
          if depth == 1 and expect_key then
            keys[#keys + 1] = string.sub(s, j + 1, e - 1)
            expect_key = false
          end
          pos = e + 1
          break
        end
      end
    else
      if c == "{" or c == "[" then
        depth = depth + 1
        expect_key = (c == "{" and depth == 1)
      elseif c == "}" or c == "]" then
        depth = depth - 1
      elseif c == "," and depth == 1 then
        expect_key = true
      end
      pos = j + 1
    end
  end
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local method = headers:get(":method")
  if method ~= "POST" and method ~= "PATCH" and method ~= "PUT" then
    return
  end
  local path = headers:get(":path") or ""
  local query = string.find(path, "?", 1, true)
  if query ~= nil then
    path = string.sub(path, 1, query - 1)
  end
  for _, op in ipairs(OPERATIONS) do
    if op.method == method and string.match(path, op.pattern) then
      local body = handle:body()
      if body == nil then
        return
      end
      local keys = top_level_keys(body:getBytes(0, body:length()))
      if keys == nil then
        return
      end
      for _, key in ipairs(keys) do
        -- A key spelt with escapes is left to the transcoder.
        if not op.fields[key] and string.find(key, "\\", 1, true) == nil then
          handle:respond(
            {[":status"] = "400"},
            'unknown field "' .. key .. '" in the request body of ' .. op.rpc
              .. "; its fields are: " .. op.names
          )
          return
        end
      end
      return
    end
  end
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pattern(template: str) -> str:
    path, _ = openapi_path(template)
    parts = re.split(r"(\{[^}]+\})", path)
    out = "".join("[^/]+" if p.startswith("{") else _LUA_MAGIC.sub(r"%\1", p) for p in parts)
    return "^" + out + "$"


def operations(descriptor_set: Path) -> list[dict[str, object]]:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    messages = {
        f".{file.package}.{message.name}": message
        for file in files.file
        for message in file.message_type
    }
    found: list[dict[str, object]] = []
    for file in files.file:
        if not file.package.startswith("aichat."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for one in [rule, *rule.additional_bindings]:
                    verb = one.WhichOneof("pattern")
                    if not one.body or verb not in ("post", "patch", "put"):
                        continue
                    message = messages[method.input_type]
                    if one.body != "*":
                        (field,) = [f for f in message.field if f.name == one.body]
                        message = messages[field.type_name]
                    names = [f.json_name for f in message.field]
                    accepted = sorted({*names, *(f.name for f in message.field)})
                    found.append(
                        {
                            "rpc": f"{service.name}.{method.name}",
                            "method": verb.upper(),
                            "pattern": _pattern(str(getattr(one, verb))),
                            "fields": accepted,
                            "names": ", ".join(names),
                        }
                    )
    return found


def render(descriptor_set: Path) -> str:
    lines = [
        "-- GENERATED by `make gen` (aichat_devtools/rest_fields.py) from gen/aichat.pb:",
        "-- envoy.yaml's Lua filter refuses a REST body field the contract does not have.",
        "local OPERATIONS = {",
    ]
    for op in operations(descriptor_set):
        fields = ", ".join(f"[{_lua_string(str(f))}] = true" for f in op["fields"])  # type: ignore[attr-defined]
        lines.append(
            f"  {{rpc = {_lua_string(str(op['rpc']))}, method = {_lua_string(str(op['method']))}, "
            f"pattern = {_lua_string(str(op['pattern']))},\n"
            f"   names = {_lua_string(str(op['names']))},\n"
            f"   fields = {{{fields}}}}},"
        )
    lines.append("}")
    return "\n".join(lines) + "\n" + _SCANNER


def main(argv: list[str] | None = None) -> int:
    """``python -m aichat_devtools.rest_fields DESCRIPTOR_SET OUT``."""
    args = sys.argv[1:] if argv is None else argv
    Path(args[1]).write_text(render(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
