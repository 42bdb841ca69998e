"""The /api/v1/subscribers and /api/v1/events endpoints."""

from ninja import Router

router = Router(tags=["subscribers"])
