"""Mounted under /simulator/ only when settings.SIMULATOR_ENABLED (see controlpanel/urls.py)."""

from django.urls import path, re_path

from . import graph_views, ledger, views

app_name = "simulator"

VERSION = r"(?P<version>v\d+\.\d+)"
NODE = r"(?P<{}>[A-Za-z0-9_.-]+)"

graph_patterns = [
    re_path(
        rf"^graph/{VERSION}/{NODE.format('phone_number_id')}/messages/?$",
        graph_views.send_messages,
        name="graph_messages",
    ),
    re_path(
        rf"^graph/{VERSION}/{NODE.format('waba_id')}/message_templates/?$",
        graph_views.message_templates,
        name="graph_templates",
    ),
    re_path(rf"^graph/{VERSION}/{NODE.format('node_id')}/?$", graph_views.node, name="graph_node"),
    re_path(r"^graph/(?P<path>.*)$", graph_views.unknown, name="graph_unknown"),
]

# The ledger of accepted messages: served by the standalone simulator too (load tests read it).
ledger_patterns = [path("sent.json", ledger.sent_json, name="sent_json")]

urlpatterns = [
    *graph_patterns,
    *ledger_patterns,
    path("sent/", ledger.sent_page, name="sent"),
    path("phone/", views.phone_index, name="phone"),
    path("phone/<str:phone>/", views.handset, name="handset"),
    path("phone/<str:phone>/<str:phone_number_id>/", views.chat, name="chat"),
    path("phone/<str:phone>/<str:phone_number_id>/send/", views.chat_send, name="chat_send"),
    path("templates/", views.template_store, name="templates"),
]
