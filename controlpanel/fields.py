"""Model fields shared by every app."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


def _fernet() -> MultiFernet:
    # Built per call so tests that override FIELD_ENCRYPTION_KEYS see their keys.
    return MultiFernet([Fernet(key.strip().encode()) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        # Never include the token in the message: it is the secret, encrypted or not.
        raise ValueError("Cannot decrypt a field: FIELD_ENCRYPTION_KEY does not match.") from exc


class EncryptedTextField(models.TextField):
    """A text column whose value is Fernet-encrypted at rest.

    The database holds only ciphertext; Python code sees plain text. Rotate keys
    by putting the new key first in FIELD_ENCRYPTION_KEY (comma-separated) and
    re-saving the rows. Lookups other than isnull are meaningless on ciphertext.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
