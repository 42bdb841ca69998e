"""The campaigns app's project URLs; each views module owns its patterns."""

from . import conversation_views, history_views, settings_views, views

app_name = "campaigns"

urlpatterns = (
    views.urlpatterns
    + history_views.urlpatterns
    + conversation_views.urlpatterns
    + settings_views.urlpatterns
)
