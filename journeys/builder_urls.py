from django.urls import path

from . import builder_views, views

urlpatterns = [
    path("journeys/", views.journey_list, name="list"),
    path("journeys/new/", views.journey_new, name="new"),
    path("journeys/import/", views.journey_import, name="import"),
    path("journeys/<uuid:journey_id>/", builder_views.builder, name="builder"),
    path("journeys/<uuid:journey_id>/save/", builder_views.builder_save, name="builder_save"),
    path("journeys/<uuid:journey_id>/validate/", builder_views.builder_validate, name="builder_validate"),
    path("journeys/<uuid:journey_id>/activate/", builder_views.builder_activate, name="builder_activate"),
    path("journeys/<uuid:journey_id>/counts/", builder_views.builder_counts, name="builder_counts"),
    path("journeys/<uuid:journey_id>/clone/", views.journey_clone, name="clone"),
    path("journeys/<uuid:journey_id>/export/", views.journey_export, name="export"),
    # Spelled out, not "<str:action>/": that would swallow the panel's stats/ and dry-run/ pages.
    *(
        path(f"journeys/<uuid:journey_id>/{action}/", views.journey_action, {"action": action}, name=action)
        for action in ("pause", "resume", "stop")
    ),
]
