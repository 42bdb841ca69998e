"""CSV import of email consent: the mapping offers and guesses the column, cells go through the one
consent parser, the ledger gets a row per change (source import, evidence naming the file), a
changed address clears the undeliverable mark. Runs the real pipeline (the COPY store on PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from subscribers.errors import InvalidInput
from subscribers.models import ConsentChange, Event, Subscriber
from tests.factories import SubscriberFactory
from tests.subscribers.test_import import do_import, report_rows, run, upload


@pytest.fixture
def user(owner, settings, tmp_path):
    """The importing user; uploads go to a temporary media root."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return owner


CONTENT = (
    "phone,email,email opt-in,evidence\n"
    "+4915112345678,ada@example.com,yes,Newsletter form 2025-03-01\n"
    "+4915112345679,bob@example.com,opted_in,\n"
    "+4915112345680,,no,\n"
    "+4915112345681,,unknown,\n"
    "+4915112345682,,perhaps,\n"
)


def email_ledger(project):
    return {
        c.subscriber.phone: (c.state, c.source, c.evidence)
        for c in ConsentChange.objects.for_project(project)
        .filter(channel="email")
        .select_related("subscriber")
    }


def test_an_email_consent_column_writes_the_email_ledger(project, user):
    job = upload(project, user, CONTENT, name="newsletter.csv")
    assert [c["target"] for c in job.mapping["columns"]] == [
        "phone",
        "email",
        "email_consent",
        "consent_evidence",
    ]
    job = run(job, evidence="Shop sign-up sheet", user=user)

    assert (job.created_count, job.rejected_count) == (4, 1)
    assert "Consent 'perhaps' is not one of yes, no" in report_rows(job)[0]["reason"]
    assert email_ledger(project) == {
        "+4915112345678": ("opted_in", "import", "Newsletter form 2025-03-01 (CSV import “newsletter.csv”)"),
        "+4915112345679": ("opted_in", "import", "Shop sign-up sheet (CSV import “newsletter.csv”)"),
        "+4915112345680": ("opted_out", "import", "CSV import “newsletter.csv”"),
    }
    states = dict(Subscriber.objects.for_project(project).values_list("phone", "email_consent"))
    assert states["+4915112345681"] == "unknown"
    assert states["+4915112345678"] == "opted_in"
    # WhatsApp consent is its own column: untouched here.
    assert not ConsentChange.objects.for_project(project).exclude(channel="email").exists()
    assert Event.objects.filter(name="Unsubscribed", attributes__channel="email").count() == 1

    again = do_import(project, user, CONTENT, evidence="Shop sign-up sheet")
    assert (again.unchanged_count, again.updated_count) == (4, 0)
    assert ConsentChange.objects.for_project(project).count() == 3


def test_email_opt_ins_need_evidence(project, user):
    job = upload(project, user, "phone,email consent\n+4915112345678,yes\n")
    with pytest.raises(InvalidInput) as exc:
        run(job, user=user)
    assert exc.value.field == "default_evidence"


def test_both_consent_columns_in_one_file(project, user):
    job = do_import(
        project,
        user,
        "phone,whatsapp opt-in,email consent\n+4915112345678,yes,no\n",
        evidence="Paper form",
    )
    assert job.created_count == 1
    s = Subscriber.objects.get(project=project)
    assert (s.whatsapp_consent, s.email_consent) == ("opted_in", "opted_out")
    assert sorted(ConsentChange.objects.filter(subscriber=s).values_list("channel", "state")) == [
        ("email", "opted_out"),
        ("whatsapp", "opted_in"),
    ]


def test_an_imported_new_address_clears_the_undeliverable_mark(project, user):
    kept, moved = (
        SubscriberFactory(
            project=project,
            phone=phone,
            email=email,
            email_undeliverable_at=timezone.now() - timedelta(days=1),
            email_undeliverable_reason="bounced",
        )
        for phone, email in (("+4915112345678", "same@example.com"), ("+4915112345679", "old@example.com"))
    )
    job = do_import(
        project, user, "phone,email\n+4915112345678,same@example.com\n+4915112345679,new@example.com\n"
    )
    assert (job.unchanged_count, job.updated_count) == (1, 1)
    kept.refresh_from_db()
    moved.refresh_from_db()
    assert (kept.email_undeliverable_at is not None, kept.email_undeliverable_reason) == (True, "bounced")
    assert (moved.email, moved.email_undeliverable_at, moved.email_undeliverable_reason) == (
        "new@example.com",
        None,
        "",
    )


def test_the_mapping_page_offers_email_consent(client, user, project):
    client.force_login(user)
    job = upload(project, user, "phone,newsletter\n+4915112345678,yes\n")
    html = client.get(
        reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    ).content.decode()
    assert '<option value="email_consent"' in html
    assert "Email consent" in html
