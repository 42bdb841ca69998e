"""``/api/v1/devices``: register and unregister push tokens. Slice "push-simulator"."""

from ninja import Router

router = Router(tags=["devices"])
