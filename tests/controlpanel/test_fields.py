from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection, models

from controlpanel.fields import EncryptedTextField, decrypt, encrypt


def test_round_trip_and_key_rotation(settings):
    old = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    token = encrypt("EAAG-secret-token")
    assert "EAAG" not in token
    # A new key in front still decrypts what the old one wrote.
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert decrypt(token) == "EAAG-secret-token"
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError, match="FIELD_ENCRYPTION_KEY does not match") as exc:
        decrypt(token)
    assert token not in str(exc.value)


def test_field_stores_only_ciphertext():
    field = EncryptedTextField()
    stored = field.get_db_prep_value("app-secret-123", connection)
    assert "app-secret-123" not in stored
    assert field.from_db_value(stored, None, connection) == "app-secret-123"
    assert field.get_prep_value("") == ""
    assert field.get_prep_value(None) is None
    assert isinstance(field, models.TextField)
