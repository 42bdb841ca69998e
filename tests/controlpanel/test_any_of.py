"""``AnyOf``: a list filter that sends one array parameter on PostgreSQL, an IN list elsewhere."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from controlpanel.sql import AnyOf
from subscribers.models import Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def test_it_filters_like_in_and_sends_one_parameter_on_postgresql():
    people = SubscriberFactory.create_batch(5)
    wanted = [people[0].pk, people[3].pk, 10**12]  # an id nobody has is simply not found
    with CaptureQueriesContext(connection) as queries:
        found = set(Subscriber.objects.filter(AnyOf(F("pk"), wanted)).values_list("pk", flat=True))
    assert found == {people[0].pk, people[3].pk}
    sql = queries.captured_queries[-1]["sql"]
    if connection.vendor == "postgresql":
        assert "= ANY(" in sql and " IN (" not in sql
    else:
        assert " IN (" in sql


def test_an_empty_list_matches_nobody():
    SubscriberFactory()
    assert not Subscriber.objects.filter(AnyOf(F("pk"), [])).exists()
