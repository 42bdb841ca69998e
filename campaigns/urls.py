"""The campaigns app's project URLs; each views module owns its patterns."""

from . import composer_views, conversation_views, history_views, settings_views, views

app_name = "campaigns"

urlpatterns = (
    views.urlpatterns
    + composer_views.urlpatterns
    + history_views.urlpatterns
    + conversation_views.urlpatterns
    + settings_views.urlpatterns
)
