"""The /api/v1/segments endpoints."""

from ninja import Router

router = Router(tags=["segments"])
