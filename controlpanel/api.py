"""The public API root: ``/api/v1/``.

Each app adds its router in its ``AppConfig.ready()`` (see ``register_router``),
so this module never imports the apps below it. Every request authenticates with
``Authorization: Bearer <key>``; the key decides the project, never the body.
Errors are JSON ``{"code", "message", "field"?}``, also those no endpoint answers
(unknown routes, wrong methods, bodies too large, server errors): see controlpanel.middleware.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer

from .models import ApiKey, Project
from .services import Actor, authenticate_api_key


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = authenticate_api_key(token)
        if key is not None:
            request.project = key.project  # type: ignore[attr-defined]
            request.api_key = key  # type: ignore[attr-defined]
            request.actor = Actor(api_key=key)  # type: ignore[attr-defined]
        return key


class ErrorOut(Schema):
    code: str
    message: str
    field: str | None = None


# What every operation may answer besides its own responses, documented once here rather than on
# each endpoint: (applies to, status, description).
COMMON_ERRORS = [
    ("body", 400, "The body is not valid JSON (`invalid_json`)."),
    ("auth", 401, "No valid API key (`unauthorized`)."),
    ("path", 404, "Not in the API key's project (an id in the path or a reference in the body)."),
    ("body", 413, "The body is larger than this endpoint takes (`payload_too_large`)."),
    ("input", 422, "Invalid input: `validation_error` or a more specific code, with the `field` at fault."),
]


class UnstorableText(ValueError):
    """A text the database cannot store: PostgreSQL refuses the NUL character in every text column."""

    def __init__(self, field: str):
        self.field = field
        super().__init__(field)

    def __str__(self) -> str:
        # In the language of the request that is answered, not of the one that raised.
        return _("%(field)s: a text may not contain the NUL character (\\u0000).") % {"field": self.field}


def find_nul(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or text in a parsed JSON value that holds a NUL, else None."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return where
        found = find_nul(item, where)
        if found:
            return found
    return None


class ApiParser(Parser):
    """JSON bodies and query strings, refused with a 422 naming the field when they hold a text no
    database column takes, instead of a 500 from PostgreSQL wherever the text is written or looked up."""

    def parse_body(self, request: HttpRequest) -> Any:
        data = super().parse_body(request)
        # The items of a batch ({"subscribers": [...]}, {"events": [...]}) are left to the services'
        # text cleaner, which refuses a NUL per item: the good items of the batch are kept.
        scanned = (
            {k: v for k, v in data.items() if not isinstance(v, list)} if isinstance(data, dict) else data
        )
        field = find_nul(scanned)
        if field:
            raise UnstorableText(field)
        return data

    def parse_querydict(self, data, list_fields, request):
        parsed = super().parse_querydict(data, list_fields, request)
        field = find_nul(parsed)
        if field:
            raise UnstorableText(field)
        return parsed


class Api(NinjaAPI):
    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(
            "ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for operations in schema["paths"].values():
            for operation in operations.values():
                add_common_errors(operation)
        return schema


def add_common_errors(operation: dict) -> None:
    params = {p["in"] for p in operation.get("parameters", ())}
    applies = {
        "body": "requestBody" in operation,
        "auth": bool(operation.get("security")),
        "path": "path" in params,
        "input": bool(params) or "requestBody" in operation,
    }
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for kind, status, description in COMMON_ERRORS:
        if applies[kind]:
            responses = operation["responses"]
            # ninja keys the responses it declares by int: one status, one key in the document.
            key = status if status in responses else str(status)
            response = responses.setdefault(key, {"content": ref})
            # ninja describes declared responses by their reason phrase; say what they mean instead.
            if response.get("description") in (None, HTTPStatus(status).phrase):
                response["description"] = description


api = Api(
    title="WhatsApp Control Panel API",
    version="1",
    description=(
        "Bearer API keys are created per project under Settings → API keys "
        "(or `manage.py create_api_key <slug>`). Errors are `{code, message, field?}`."
    ),
    auth=ApiKeyAuth(),
    parser=ApiParser(),
    urls_namespace="api",
)


API_PREFIX = "/api/v1"

# Largest request body in bytes per path prefix under /api/v1 (see register_body_limit); every
# other route takes at most DATA_UPLOAD_MAX_MEMORY_SIZE.
BODY_LIMITS: dict[str, int] = {}


def register_router(prefix: str, router: Router) -> None:
    """Mount an app's router under ``/api/v1/<prefix>``; call from ``AppConfig.ready``."""
    api.add_router(prefix, router)


def register_body_limit(prefix: str, max_bytes: int) -> None:
    """Let the routes under ``/api/v1/<prefix>`` (e.g. ``"/imports"``) take bodies of up to
    ``max_bytes`` instead of DATA_UPLOAD_MAX_MEMORY_SIZE, larger or smaller; call from
    ``AppConfig.ready``. A JSON body is read into memory whole, a multipart file is streamed to
    disk by Django: large uploads should be multipart."""
    BODY_LIMITS[prefix] = max_bytes


def body_limit(path: str) -> int | None:
    """The largest body the route at ``path`` (a full /api/v1/ path) takes; None: no limit."""
    route = path.removeprefix(API_PREFIX)
    prefixes = [p for p in BODY_LIMITS if route == p or route.startswith(p.rstrip("/") + "/")]
    if prefixes:
        return BODY_LIMITS[max(prefixes, key=len)]
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large(max_bytes: int | None) -> str:
    return _("The request body is larger than this endpoint takes (%(max)s bytes at most).") % {
        "max": max_bytes
    }


def error(request, status: int, code: str, message: str, field: str | None = None):
    body = {"code": code, "message": message}
    if field:
        body["field"] = field
    return api.create_response(request, body, status=status)


def validation_message(problem: dict) -> str:
    """Pydantic's message for one invalid input, in the request's language: English as pydantic
    words it; other languages for the common kinds of problem, pydantic's English for the rest."""
    english = problem.get("msg") or _("Invalid input.")
    if (get_language() or "en").startswith("en"):
        return english
    ctx = problem.get("ctx") or {}
    match problem.get("type"):
        case "missing":
            return _("Field required")
        case "string_type":
            return _("Input should be a valid string")
        case "int_type" | "int_parsing" | "int_from_float":
            return _("Input should be a valid integer")
        case "float_type" | "float_parsing" | "decimal_type" | "decimal_parsing":
            return _("Input should be a valid number")
        case "bool_type" | "bool_parsing":
            return _("Input should be a valid boolean")
        case "list_type":
            return _("Input should be a valid list")
        case "dict_type" | "model_type" | "model_attributes_type":
            return _("Input should be an object")
        case "uuid_type" | "uuid_parsing":
            return _("Input should be a valid UUID")
        case "datetime_type" | "datetime_parsing" | "datetime_from_date_parsing":
            return _("Input should be a valid date and time")
        case "date_type" | "date_parsing" | "date_from_datetime_parsing":
            return _("Input should be a valid date")
        case "extra_forbidden":
            return _("Extra inputs are not permitted")
        case "string_too_long" if "max_length" in ctx:
            n = ctx["max_length"]
            return ngettext(
                "String should have at most %(count)s character",
                "String should have at most %(count)s characters",
                n,
            ) % {"count": n}
        case "string_too_short" if "min_length" in ctx:
            n = ctx["min_length"]
            return ngettext(
                "String should have at least %(count)s character",
                "String should have at least %(count)s characters",
                n,
            ) % {"count": n}
        case "enum" | "literal_error" if "expected" in ctx:
            word = _("or")  # pydantic's "'a', 'b' or 'c'"
            expected = str(ctx["expected"]).replace(" or ", f" {word} ")
            return _("Input should be %(expected)s") % {"expected": expected}
    return english


@api.exception_handler(NinjaValidationError)
def on_validation_error(request, exc: NinjaValidationError):
    first = exc.errors[0] if exc.errors else {}
    # loc is like ("body", "payload", "phone"); the last names the field.
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "payload", "query", "path")]
    message = validation_message(first)
    field = ".".join(loc) or None
    if field:
        message = f"{field}: {message}"
    return error(request, 422, "validation_error", message, field)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return error(
        request, 401, "unauthorized", _("A valid API key is required (Authorization: Bearer <key>).")
    )


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, "not_found", str(exc) or _("Not found."))


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, UnstorableText):
        # django-ninja wraps whatever parse_body raises in its 400 "Cannot parse request body".
        return on_unstorable_text(request, exc.__cause__)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # django-ninja's "Cannot parse request body": say what is wrong with it.
        message = _("The request body is not valid JSON: %(error)s") % {"error": exc.__cause__}
        return error(request, 400, "invalid_json", message)
    return error(request, exc.status_code, getattr(exc, "code", "error"), str(exc))


@api.exception_handler(UnstorableText)
def on_unstorable_text(request, exc: UnstorableText):
    return error(request, 422, "invalid_text", str(exc), exc.field)


@api.exception_handler(RequestDataTooBig)
def on_body_too_large(request, exc):
    # Django counts a multipart body's form fields (not its files) against DATA_UPLOAD_MAX_MEMORY_SIZE
    # as it parses them; the middleware refuses every other body too large before it is read.
    return error(request, 413, "payload_too_large", too_large(body_limit(request.path_info)))


class ApiError(HttpError):
    """Raise from an endpoint for a 4xx with a machine-readable code."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(status, message)
        self.code = code
        self.field = field


@api.exception_handler(ApiError)
def on_api_error(request, exc: ApiError):
    return error(request, exc.status_code, exc.code, str(exc), exc.field)


@api.get("/", auth=None, include_in_schema=False)
def api_root(request):
    return {
        "name": api.title,
        "version": api.version,
        "docs": "/api/v1/docs",
        "openapi": "/api/v1/openapi.json",
    }


@csrf_exempt  # a POST to an unknown route is a 404, not Django's HTML CSRF page
def not_found(request, path: str = ""):
    """Unknown /api/v1/ paths answer JSON, like the rest of the API."""
    message = _("No API endpoint at %(path)s.") % {"path": request.path}
    return JsonResponse({"code": "not_found", "message": message}, status=404)


class ProjectOut(Schema):
    id: UUID
    name: str
    slug: str
    time_zone: str
    default_country: str
    created_at: datetime


@api.get(
    "/project", response={200: ProjectOut, 401: ErrorOut}, tags=["project"], summary="The API key's project"
)
def get_project(request):
    """The project the API key belongs to."""
    project: Project = request.project
    return ProjectOut(
        id=project.public_id,
        name=project.name,
        slug=project.slug,
        time_zone=project.time_zone,
        default_country=project.default_country,
        created_at=project.created_at,
    )
