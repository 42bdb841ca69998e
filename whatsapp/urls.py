"""The whatsapp app's project URLs; each views module owns its patterns."""

from . import template_views, views

app_name = "whatsapp"

urlpatterns = views.urlpatterns + template_views.urlpatterns
