"""The panel's URLconf with both simulators mounted, whatever SIMULATOR_ENABLED said when the panel's
URLconf was first imported (for tests and demos on a production-like setup), like
``whatsapp.simulator.full_urls``."""

from django.urls import include, path

from whatsapp.simulator.full_urls import urlpatterns as with_phone

urlpatterns = list(with_phone)
if not any(getattr(p, "urlconf_name", None) == "push.simulator.urls" for p in with_phone):
    urlpatterns.append(path("simulator/", include("push.simulator.urls")))
