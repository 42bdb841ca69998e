"""A marketer imports a UTF-8 file with one stray Latin-1 byte: sees that row, chooses, imports."""

from __future__ import annotations

import re

import pytest

from controlpanel.models import Role
from subscribers.models import ImportJob, Subscriber
from tests.browser.test_subscriber_pages import log_in
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_rows_that_do_not_decode_are_chosen_about_before_the_import(page, settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    content = (
        "phone,name,city\n+4915112345678,Ayşe Öztürk,Köln\n".encode() + b"+4915112345679,J\xfcrgen,Bonn\n"
    )
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    log_in(page, marketer)

    page.goto("/p/alpha/subscribers/import/")
    page.set_input_files("input[name=file]", str(path))
    page.click("button:text('Upload and preview')")
    page.wait_for_url(re.compile(r"/p/alpha/subscribers/import/[0-9a-f-]{36}/$"))
    table = page.locator("[data-testid=undecodable-table]")
    assert "0xFC" in table.inner_text() and "+4915112345679,Jürgen,Bonn" in table.inner_text()
    assert "Ayşe Öztürk" in page.locator("[data-testid=preview]").inner_text()

    page.check("input[name=choice][value=skip]")
    page.click("[data-testid=choose-encoding]")
    assert "skip these rows" in page.locator("[data-testid=encoding-chosen]").inner_text()
    page.fill("input[name=newtag_2]", "city")
    page.click("[data-testid=start-import]")
    page.wait_for_load_state()
    job = ImportJob.objects.get(project=project)
    assert job.undecodable_rows == "skip"
    assert job.status in ("queued", "running", "done")
    assert page.console_problems == []
    assert not Subscriber.objects.filter(project=project, name__contains="\ufffd").exists()
