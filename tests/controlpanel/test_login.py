from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from controlpanel.models import User
from tests.factories import PASSWORD, UserFactory

LOGIN = "/accounts/login/"


@pytest.fixture
def locked_user(db, client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    user = UserFactory(email="t6@example.com")
    for _ in range(3):
        client.post(LOGIN, {"username": "t6@example.com", "password": "wrong"})
    return user


def test_login_ignores_the_case_of_the_email(client, db):
    UserFactory(email="t6@example.com")
    response = client.post(LOGIN, {"username": "  T6@Example.COM ", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")


@pytest.mark.parametrize(
    "spelling", ["t6@example.com", "T6@EXAMPLE.COM", "T6@example.com", " t6@example.com"]
)
def test_a_locked_account_stays_locked_whatever_the_case_of_the_email(client, locked_user, spelling):
    response = client.post(LOGIN, {"username": spelling, "password": PASSWORD})
    assert response.status_code == 429
    assert not client.session.get("_auth_user_id")


def test_failures_in_other_cases_count_towards_the_same_lockout(client, db, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(email="t6@example.com")
    for spelling in ["t6@example.com", "T6@example.com", "t6@EXAMPLE.com"]:
        client.post(LOGIN, {"username": spelling, "password": "wrong"})
    assert client.post(LOGIN, {"username": "t6@example.com", "password": PASSWORD}).status_code == 429


def test_accounts_are_stored_lower_case_from_every_entry_point(db):
    assert User.objects.create_user("Mixed@Example.COM", "x").email == "mixed@example.com"
    user = User(email="Admin.Typed@Example.com")
    user.clean()
    assert user.email == "admin.typed@example.com"


def test_two_accounts_differing_only_in_case_are_refused(db):
    UserFactory(email="t6@example.com")
    user = User(email="T6@Example.com")
    with pytest.raises(ValidationError):
        user.full_clean(exclude=["password"])
    # Past the forms too: the database refuses an email that is not stored lower-case.
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="T6@Example.com")
