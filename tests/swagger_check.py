"""Check Partner Center bodies against the swagger in ../shared/spec/.

The swagger is 2.0 (JSON Schema draft 4 underneath) and cannot say "nullable", while the real
API returns ``null`` for many properties (spec §3, [REAL]); so every typed node and every enum
also admits ``null`` here. Nothing else is relaxed: a wrong type, an unknown enum value or a
mis-shaped object fails.

- :func:`validate_referral` — the ``Referral`` definition (GET by id, POST, PUT, PATCH with
  ``Prefer: return=representation``);
- :func:`validate_referral_list` — the ``ODataResponse[List[Referral]]`` definition, plus the
  OData annotations it does not list (``@odata.count`` integer, ``@odata.nextLink`` URL);
- :func:`validate_error` — the documented ``{"error": {code, message, target, innerError}}``;
- :func:`validate_throttle` — API Management's ``{"statusCode", "message"}`` for 429/5xx;
- :func:`validate_response` picks the right one for a ``requests`` response, and
  :func:`swagger_hook` does it as a ``requests`` response hook.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import requests

# The shared specs sit beside the project (CI checks out ``../shared`` next to it).
SWAGGER = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "spec"
    / "partner-center-referrals.swagger.json"
)
_PREFIX = "Microsoft.Partner.Service.PartnerReferrals.Contracts.V3."
REFERRAL = f"{_PREFIX}Referral"
REFERRAL_LIST = "Swashbuckle.OData.ODataResponse[System.Collections.Generic.List[" + REFERRAL + "]]"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "enum": [
                        "accessDenied",
                        "generalException",
                        "invalidRequest",
                        "itemNotFound",
                        "preconditionFailed",
                        "resourceModified",
                        "serviceNotAvailable",
                        "unauthenticated",
                    ]
                },
                "message": {"type": "string", "maxLength": 1024},
                "target": {"type": "string"},
                "innerError": {"type": "object"},
            },
        }
    },
}
THROTTLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statusCode", "message"],
    "properties": {"statusCode": {"type": "integer"}, "message": {"type": "string"}},
}
_LIST_ANNOTATIONS = {"@odata.context", "@odata.count", "@odata.nextLink", "value"}


def nullable(schema: Any) -> Any:
    """A swagger 2.0 schema with ``null`` allowed at every typed node and in every enum."""
    if isinstance(schema, list):
        return [nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-"):
            continue
        if key == "properties":
            result[key] = {name: nullable(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf"):
            result[key] = nullable(value)
        elif key == "type" and isinstance(value, str):
            result[key] = [value, "null"]
        elif key == "enum":
            result[key] = [*value, None]
        else:
            result[key] = value
    return result


@cache
def _definitions() -> dict[str, Any]:
    swagger = json.loads(SWAGGER.read_text(encoding="utf-8"))
    return {name: nullable(schema) for name, schema in swagger["definitions"].items()}


@cache
def _validator(definition: str) -> jsonschema.Draft4Validator:
    definitions = _definitions()
    if definition not in definitions:
        raise KeyError(f"no definition {definition!r} in {SWAGGER}")
    schema = {"definitions": definitions, "$ref": f"#/definitions/{definition}"}
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _validate(validator: jsonschema.protocols.Validator, body: object, what: str) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise AssertionError(f"{what} does not match the swagger: {details}")


def validate_referral(body: object) -> None:
    assert isinstance(body, dict), f"a referral must be an object, got {type(body).__name__}"
    _validate(_validator(REFERRAL), body, "referral")


def validate_referral_list(body: object) -> None:
    assert isinstance(body, dict), "a referral list must be an object"
    _validate(_validator(REFERRAL_LIST), body, "referral list")
    assert isinstance(body.get("value"), list), "a referral list needs 'value'"
    unknown = set(body) - _LIST_ANNOTATIONS
    assert not unknown, f"unexpected properties in a referral list: {sorted(unknown)}"
    if "@odata.count" in body:
        assert isinstance(body["@odata.count"], int), "@odata.count must be an integer"
    if "@odata.nextLink" in body:
        link = urlsplit(body["@odata.nextLink"])
        assert link.scheme in ("http", "https"), "@odata.nextLink must be an absolute URL"
        assert link.netloc, "@odata.nextLink must be an absolute URL"


def validate_error(body: object) -> None:
    _validate(jsonschema.Draft4Validator(ERROR_SCHEMA), body, "error envelope")


def validate_throttle(body: object) -> None:
    _validate(jsonschema.Draft4Validator(THROTTLE_SCHEMA), body, "throttling body")


def validate_response(response: requests.Response) -> None:
    """Validate a Partner Center response body by its status and request."""
    status = response.status_code
    if status == 204:
        assert response.content == b"", "204 must have an empty body"
        return
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        f"{status} reply is not JSON: {response.headers.get('Content-Type')}"
    )
    body = response.json()
    if status >= 400:
        shape = validate_throttle if "statusCode" in body else validate_error
        shape(body)
        return
    path = urlsplit(response.url).path.rstrip("/")
    if path.endswith("/referrals") and response.request.method == "GET":
        validate_referral_list(body)
    else:
        validate_referral(body)


def swagger_hook(response: requests.Response, *_args: object, **_kwargs: object) -> None:
    """``session.hooks["response"].append(swagger_hook)``: check every referral reply."""
    if "/engagements/referrals" in urlsplit(response.url).path:
        validate_response(response)
