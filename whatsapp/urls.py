"""The whatsapp app's project URLs; each views module owns its patterns."""

from . import conversation_views, template_views, views

app_name = "whatsapp"

urlpatterns = views.urlpatterns + template_views.urlpatterns + conversation_views.urlpatterns
