"""``/api/v1/push/...``: an app reports that a push was opened. Slice "push-simulator"."""

from ninja import Router

router = Router(tags=["push"])
