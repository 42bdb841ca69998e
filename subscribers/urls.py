"""The subscribers app's project URLs; each views module owns its own patterns."""

from . import channel_views, import_views, segment_views, views

app_name = "subscribers"

urlpatterns = (
    views.urlpatterns + channel_views.urlpatterns + segment_views.urlpatterns + import_views.urlpatterns
)
