"""The push simulator: FCM v1's send URL and the device page. Slice "push-simulator"."""

app_name = "push_simulator"

urlpatterns: list = []
