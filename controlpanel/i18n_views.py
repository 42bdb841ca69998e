"""gettext() for the panel's scripts: Django's JavaScript catalog, cached and never render-blocking.

Building the catalog costs ~50 ms (it reads every app's translations); a page's scripts wait for
it, so a click in that window met a page without its handlers. The URL names the language and
the catalogs' version, so the server caches each catalog once and browsers keep it for a day; a
deployment with new translations changes the version and with it the URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import translation
from django.views.decorators.cache import cache_page
from django.views.i18n import JavaScriptCatalog


def _catalog_version() -> str:
    compiled = sorted(Path(settings.BASE_DIR, "locale").glob("*/LC_MESSAGES/djangojs.mo"))
    return "-".join(str(int(p.stat().st_mtime)) for p in compiled) or "0"


CATALOG_VERSION = _catalog_version()


@cache_page(86400, key_prefix=f"jsi18n-{CATALOG_VERSION}")
def javascript_catalog(request: HttpRequest) -> HttpResponse:
    language = request.GET.get("l", "")
    if language not in dict(settings.LANGUAGES):
        language = translation.get_language()
    with translation.override(language):
        return JavaScriptCatalog.as_view()(request)


def javascript_catalog_url() -> str:
    """The catalog of the active language, at a URL that changes when its translations do."""
    query = urlencode({"l": translation.get_language() or settings.LANGUAGE_CODE, "v": CATALOG_VERSION})
    return f"{reverse('javascript-catalog')}?{query}"
