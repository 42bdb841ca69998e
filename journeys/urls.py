from django.urls import include, path

app_name = "journeys"

# The builder (list, canvas, validation) and the other journey pages (keyword shortcut, stats,
# dry run) each keep their own routes.
urlpatterns = [
    path("", include("journeys.builder_urls")),
    path("", include("journeys.panel_urls")),
]
