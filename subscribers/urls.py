"""The subscribers app's project URLs; each views module owns its own patterns."""

from . import import_views, segment_views, views

app_name = "subscribers"

urlpatterns = views.urlpatterns + segment_views.urlpatterns + import_views.urlpatterns
