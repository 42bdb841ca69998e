"""The panel's URLconf with the simulator mounted whatever SIMULATOR_ENABLED says (for tests and demos
on a production-like setup, e.g. the PostgreSQL test run, where the setting is off by default)."""

from django.conf import settings
from django.urls import include, path

from controlpanel.urls import urlpatterns as panel

urlpatterns = list(panel)
if not settings.SIMULATOR_ENABLED:
    urlpatterns.append(path("simulator/", include("whatsapp.simulator.urls")))
