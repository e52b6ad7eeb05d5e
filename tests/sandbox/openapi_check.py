"""Checks a recorded sandbox exchange against the real API's OpenAPI description in ../shared/reference/api.

The sandbox mounts each service under a prefix; the description's server and paths say where the real
service has the same call:

    sandbox path                        description                                   real path
    /broker/api/v1/...                  altinn-broker-v1.json                         /broker/api/v1/...
    /correspondence/api/v1/...          altinn-correspondence-v1.json                 /correspondence/api/v1/...
    /svarut/api/v2/...                  svarut/forsendelse-*-api-v2.json,             /api/v2/...
                                        svarut/mottakersystem-api-v2.json

A call none of them describes (SvarInn's mottaksservice, for one) is `undescribed`, never passed.

The descriptions are read as they are, with these workarounds made here, on the loaded copy (never in
../shared), for what openapi-core cannot read as written:
- altinn-broker-v1.json nests two of its three webhooks inside the first one, which openapi-spec-validator
  refuses (a webhook holds only operations). Webhooks are Altinn's calls to a subscriber, never an answer
  to a client: they are left out.
- Both Altinn descriptions say "openapi": "3.1.0" but write nullable fields the OpenAPI 3.0 way
  (`nullable: true`), a keyword 3.1 does not have: read as written, every null they document as allowed
  would be refused. `nullable: true` becomes its 3.1 form, `anyOf: [the schema, {"type": "null"}]` (a
  list of types would be shorter, but openapi-core reads a parameter's type as one string). They cannot
  simply be read as 3.0: the broker's form uses patternProperties, which 3.0 lacks.
- openapi-core hands a body to the schema as the media type's reader makes it, and picks the reader by
  the description's media type, not the message's. So: an application/octet-stream body (bytes, which a
  3.1 `type: string` refuses: 3.1 describes binary with contentMediaType) is read as text, latin-1 byte
  for byte, unless it is a JSON object: the broker's download puts the ProblemDetails of its errors under
  application/octet-stream. A body under `*/*` (KS's request bodies) is read as JSON where it is JSON.
  Each part of a multipart/form-data body is read as text (a field as UTF-8, a file as latin-1), where
  openapi-core would hand the schema bytes, which no `type: boolean` or `type: string` takes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from jsonschema.exceptions import ValidationError
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import MissingRequiredRequestBody
from werkzeug.datastructures import ImmutableMultiDict

from gateway.sandbox.observer import Exchange
from tests.conftest import REFERENCE

API = REFERENCE / "api"
ALTINN = "https://platform.tt02.altinn.no"
SVARUT = "https://test.svarut.ks.no"
SVARUT_DESCRIPTIONS = ("forsendelse-send-api-v2.json", "forsendelse-status-api-v2.json",
                       "forsendelse-lest-api-v2.json", "forsendelse-typer-api-v2.json", "mottakersystem-api-v2.json")
# sandbox prefix -> (the part of the sandbox path the real service does not have, its host, its descriptions)
MOUNTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "/broker/api/": ("", ALTINN, ("altinn-broker-v1.json",)),
    "/correspondence/api/": ("", ALTINN, ("altinn-correspondence-v1.json",)),
    "/svarut/api/": ("/svarut", SVARUT, tuple(f"svarut/{name}" for name in SVARUT_DESCRIPTIONS)),
    "/svarut/tjenester/": ("/svarut", SVARUT, ()),  # SvarInn: KS publishes no OpenAPI description of it
}


@dataclass(frozen=True)
class Verdict:
    """What the description says of one exchange: `described` False when no description has the call."""

    exchange: Exchange
    description: str | None
    request_problems: tuple[str, ...] = ()
    response_problems: tuple[str, ...] = ()

    @property
    def described(self) -> bool:
        return self.description is not None

    @property
    def call(self) -> str:
        return f"{self.exchange.method} {self.exchange.path} -> {self.exchange.status}"


def observed_service(path: str) -> bool:
    """True for a path of a service the descriptions speak of (not the sandbox's own /_sandbox extras)."""
    return any(path.startswith(prefix) for prefix in MOUNTS)


def _nullable_as_31(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_as_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {key: _nullable_as_31(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [rewritten, {"type": "null"}]}
    return rewritten


def _readable(document: dict[str, Any]) -> dict[str, Any]:
    """The workarounds of the module docstring, on a copy."""
    document = copy.deepcopy(document)
    document.pop("webhooks", None)
    if str(document.get("openapi", "")).startswith("3.1"):
        document = _nullable_as_31(document)
    return document


def _octet_stream(body: bytes, **_parameters: str) -> Any:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else body.decode("latin-1")


def _any(body: bytes, **_parameters: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("latin-1")


def _form(body: bytes, **parameters: str) -> ImmutableMultiDict[str, str]:
    head = f'Content-Type: multipart/form-data; boundary="{parameters.get("boundary", "")}"\r\n\r\n'.encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields = []
    for part in message.iter_parts():
        content = part.get_payload(decode=True) or b""
        text = content.decode("latin-1") if part.get_filename() is not None else content.decode("utf-8", "replace")
        fields.append((str(part.get_param("name", header="content-disposition")), text))
    return ImmutableMultiDict(fields)


READERS = {"application/octet-stream": _octet_stream, "*/*": _any, "multipart/form-data": _form}


@cache
def description(name: str) -> OpenAPI:
    raw = json.loads((API / name).read_text(encoding="utf-8"))
    return OpenAPI.from_dict(_readable(raw), config=Config(extra_media_type_deserializers=READERS))


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The innermost schema errors: why no branch of an anyOf (a nullable field, say) took the value."""
    if not error.context:
        yield error
    for inner in error.context or ():
        if (inner.validator, inner.validator_value) != ("type", "null"):  # the null branch of a nullable field
            yield from _leaves(inner)


def _problems(errors: list[Exception]) -> tuple[str, ...]:
    found = []
    for error in errors:
        schema_errors = []
        cause: BaseException | None = error
        while cause is not None:
            schema_errors += list(getattr(cause, "schema_errors", ()) or ())
            cause = cause.__cause__
        if not schema_errors:
            found.append(f"{type(error).__name__}: {error}")
        for schema_error in schema_errors:
            for leaf in _leaves(schema_error):
                where = "/".join(str(part) for part in leaf.absolute_path)
                found.append(f"{type(error).__name__} at {where or '(body)'}: {leaf.message[:300]}")
    return tuple(dict.fromkeys(found))


def _requests(exchange: Exchange) -> Iterator[tuple[str, MockRequest]]:
    for prefix, (strip, host, names) in MOUNTS.items():
        if not exchange.path.startswith(prefix):
            continue
        path = exchange.path.removeprefix(strip)
        for name in names:
            yield name, MockRequest(
                host, exchange.method, path, args=ImmutableMultiDict(parse_qsl(exchange.query)),
                headers=exchange.request_headers, data=exchange.request_body,
                content_type=exchange.request_content_type or "",
            )


def check(exchange: Exchange) -> Verdict:
    """Validate the request and the answer of `exchange` against the description that has its call.

    A request body the service never read (it answered first, e.g. refusing the token) is not held against
    the request: the recorder did not see it.
    """
    for name, request in _requests(exchange):
        api = description(name)
        request_errors = list(api.iter_request_errors(request))
        if any(isinstance(error, PathError) for error in request_errors):
            continue
        if not exchange.request_read:
            request_errors = [e for e in request_errors if not isinstance(e, MissingRequiredRequestBody)]
        response = MockResponse(exchange.response_body, exchange.status, headers=exchange.response_headers,
                                content_type=exchange.response_content_type or "")
        response_errors = list(api.iter_response_errors(request, response))
        return Verdict(exchange, name, _problems(request_errors), _problems(response_errors))
    return Verdict(exchange, None)


def report(verdicts: list[Verdict]) -> str:
    """The failed verdicts, one paragraph for each call and its problems (the first answer shown), for an
    assertion message."""
    failed: dict[tuple[str, ...], list[Verdict]] = {}
    for verdict in verdicts:
        if verdict.request_problems or verdict.response_problems:
            exchange = verdict.exchange
            key = (exchange.method, exchange.path.split("/")[-1], str(exchange.status), *verdict.request_problems,
                   *verdict.response_problems)
            failed.setdefault(key, []).append(verdict)
    lines = []
    for same in failed.values():
        verdict = same[0]
        lines.append(f"{verdict.call} ({verdict.description}), {len(same)} time(s)")
        lines += [f"  request:  {p}" for p in verdict.request_problems]
        lines += [f"  response: {p}" for p in verdict.response_problems]
        lines.append(f"  answer: {verdict.exchange.response_content_type} {verdict.exchange.response_body[:300]!r}")
    return "\n".join(lines)


__all__ = ["MOUNTS", "Verdict", "check", "description", "observed_service", "report"]

