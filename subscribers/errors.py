from __future__ import annotations


class InvalidInput(Exception):
    """Bad input from a form, an API call or a CSV row: a code, a message for humans, the field."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body
