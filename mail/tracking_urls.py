"""Open pixel, click redirect and unsubscribe URLs (public, signed). Slice "mail-tracking"."""

app_name = "mail_tracking"

urlpatterns: list = []
