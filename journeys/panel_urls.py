"""Routes of the journey pages beside the builder (panel_views.py), under /p/<slug>/."""

from django.urls import path

from . import panel_views as views

urlpatterns = [
    path("journeys/keyword/new/", views.keyword_new, name="keyword_new"),
    path("journeys/examples/<slug:key>/", views.example_new, name="example_new"),
    path("journeys/<uuid:journey_id>/stats/", views.journey_stats_page, name="stats"),
    path("journeys/<uuid:journey_id>/dry-run/", views.dryrun_page, name="dryrun"),
    path("journeys/<uuid:journey_id>/dry-run/start/", views.dryrun_start, name="dryrun_start"),
    path("journeys/<uuid:journey_id>/dry-run/forward/", views.dryrun_forward, name="dryrun_forward"),
    path("journeys/<uuid:journey_id>/dry-run/fire/", views.dryrun_fire, name="dryrun_fire"),
]
