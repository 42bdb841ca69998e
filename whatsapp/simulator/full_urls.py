"""The panel's URLconf with the simulator mounted, whatever SIMULATOR_ENABLED said when the panel's
URLconf was first imported (for tests and demos on a production-like setup, e.g. the PostgreSQL test
run, where the setting is off by default)."""

from django.urls import include, path

from controlpanel.urls import urlpatterns as panel

urlpatterns = list(panel)
if not any(str(getattr(p, "pattern", "")) == "simulator/" for p in panel):
    urlpatterns.append(path("simulator/", include("whatsapp.simulator.urls")))
