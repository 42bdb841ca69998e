"""Answers under /api/v1/ that no endpoint gives: bodies too large, and JSON for every error.

Django and django-ninja answer some errors themselves, in HTML or plain text: a 405 for a wrong
method, the 400 of a body Django refuses, the 500 page. API callers parse JSON, so every error
under /api/v1/ is the API's ``{"code", "message"}`` shape (README "API").
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .api import API_PREFIX, body_limit, too_large

# The codes stay as they are in every language; the messages are for people, in the request's.
GENERIC_ERRORS = {
    400: ("bad_request", gettext_lazy("The request could not be read.")),
    401: ("unauthorized", gettext_lazy("A valid API key is required (Authorization: Bearer <key>).")),
    403: ("forbidden", gettext_lazy("This request is not allowed.")),
    404: ("not_found", gettext_lazy("No API endpoint here.")),
    413: ("payload_too_large", gettext_lazy("The request body is too large.")),
    429: ("too_many_requests", gettext_lazy("Too many requests; try again later.")),
    500: ("server_error", gettext_lazy("Something went wrong on our side; it has been logged.")),
}
# Headers that mean something to a client whatever the body says.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiErrorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != API_PREFIX and not request.path_info.startswith(API_PREFIX + "/"):
            return self.get_response(request)
        refused = check_body_size(request)
        if refused is not None:
            return refused
        return as_json_error(self.get_response(request))


def check_body_size(request: HttpRequest) -> JsonResponse | None:
    """Refuse a body larger than its route takes from its Content-Length, before anything reads it
    (nor authenticates the caller: a 20 MB body is refused for what it is)."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
        if length < 0:
            raise ValueError(raw)
    except ValueError:
        return JsonResponse(
            {"code": "bad_request", "message": _("Invalid Content-Length %(value)r.") % {"value": raw}},
            status=400,
        )
    limit = body_limit(request.path_info)
    if limit is not None and length > limit:
        return JsonResponse({"code": "payload_too_large", "message": too_large(limit)}, status=413)
    default = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if default is not None and length > default and not is_multipart(request):
        # The route takes more than Django's HttpRequest.body allows (DATA_UPLOAD_MAX_MEMORY_SIZE)
        # and its size was checked above: read it here, where Django's own check does not run.
        request._body = request.read()
    return None


def is_multipart(request: HttpRequest) -> bool:
    # Django streams multipart files to disk without reading the whole body into memory.
    return request.content_type.startswith("multipart/")


def as_json_error(response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    status = response.status_code
    if status == 405:
        allowed = response.get("Allow", "")
        if allowed:
            message = _("This endpoint answers %(methods)s.") % {"methods": allowed}
        else:
            message = _("This endpoint answers no method.")
        code = "method_not_allowed"
    else:
        code, message = GENERIC_ERRORS.get(status, ("error", response.reason_phrase))
    json = JsonResponse({"code": code, "message": str(message)}, status=status)
    for header in KEPT_HEADERS:
        if header in response:
            json[header] = response[header]
    return json


class UserLanguageMiddleware:
    """The panel in the language the user picked in their profile; without a pick, the browser's.

    Runs after LocaleMiddleware (which activated the browser's language) and authentication; the
    pick is a column of the user row that authentication loaded anyway, so this costs no query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        language = getattr(user, "language", "") if user is not None and user.is_authenticated else ""
        if language and language != request.LANGUAGE_CODE:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)
