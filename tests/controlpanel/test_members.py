from __future__ import annotations

import re

from django.core import mail
from django.urls import reverse

from controlpanel.models import AuditEntry, Invitation, Membership, Role, User
from tests.factories import PASSWORD, UserFactory


def invite(client, project, email="new@example.com", role="marketer"):
    return client.post(reverse("controlpanel:members", args=[project.slug]), {"email": email, "role": role})


def link_from_mail() -> str:
    return re.search(r"http://\S+/invite/\S+/", mail.outbox[-1].body).group(0)


def test_owner_invites_and_new_user_signs_up(
    client, owner_client, project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(owner_client, project)
    assert response.status_code == 302
    assert mail.outbox[-1].to == ["new@example.com"]
    link = link_from_mail()
    # Without PUBLIC_BASE_URL the link points where the owner is (the test client's host).
    assert link.startswith("http://testserver/invite/")
    # The owner sees the link too, for when outgoing mail is not set up.
    assert link in owner_client.get(response["Location"]).content.decode()
    path = link.split("testserver")[-1]

    client.logout()
    page = client.get(path)
    assert page.status_code == 200 and b"Create your account" in page.content
    response = client.post(
        path, {"name": "New Person", "password1": "S3cure-passphrase!", "password2": "S3cure-passphrase!"}
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert Membership.objects.get(project=project, user=user).role == Role.MARKETER
    assert AuditEntry.objects.filter(project=project, action="member.joined").exists()
    # The link works once.
    assert client.get(path).status_code == 404


def test_existing_user_accepts_after_login(client, owner_client, project, django_capture_on_commit_callbacks):
    existing = UserFactory(email="known@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        invite(owner_client, project, email="known@example.com", role="viewer")
    path = "/invite/" + link_from_mail().split("/invite/")[1]
    client.logout()
    assert client.get(path)["Location"].startswith(reverse("login"))
    client.force_login(existing)
    assert client.post(path).status_code == 302
    assert Membership.objects.get(project=project, user=existing).role == Role.VIEWER


def test_invitation_for_someone_else_is_refused(
    client, owner_client, project, django_capture_on_commit_callbacks, outsider
):
    with django_capture_on_commit_callbacks(execute=True):
        invite(owner_client, project, email="someone@example.com")
    path = "/invite/" + link_from_mail().split("/invite/")[1]
    client.force_login(outsider)
    assert client.post(path).status_code == 403
    assert not Membership.objects.filter(project=project, user=outsider).exists()


def test_reinviting_says_the_old_link_stopped_working(
    owner_client, project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invite(owner_client, project, email="twice@example.com")
    first = link_from_mail()
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(owner_client, project, email="twice@example.com")
    page = owner_client.get(response["Location"]).content.decode()
    assert "again; the earlier link no longer works" in page
    assert owner_client.get("/invite/" + first.split("/invite/")[1]).status_code == 404
    assert Invitation.objects.filter(project=project, email="twice@example.com", revoked_at=None).count() == 1


def test_inviting_a_member_again_shows_an_error(owner_client, project, viewer):
    response = invite(owner_client, project, email=viewer.email)
    assert response.status_code == 200
    assert b"already a member" in response.content
    assert not Invitation.objects.filter(project=project).exists()


def test_invalid_email_is_shown_and_nothing_sent(owner_client, project):
    response = invite(owner_client, project, email="not-an-email")
    assert response.status_code == 200
    assert b"Enter a valid email address" in response.content
    assert mail.outbox == []


def test_admin_cannot_invite(client, project, member_of):
    client.force_login(member_of(Role.ADMIN))
    assert invite(client, project).status_code == 403


def test_owner_changes_role(owner_client, project, viewer):
    membership = Membership.objects.get(user=viewer)
    url = reverse("controlpanel:member_role", args=[project.slug, membership.public_id])
    assert owner_client.post(url, {"role": "admin"}).status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    entry = AuditEntry.objects.get(action="member.role_changed")
    assert entry.changes["role"] == ["viewer", "admin"]


def test_last_owner_cannot_be_demoted_or_removed(owner_client, project, owner):
    membership = Membership.objects.get(user=owner, project=project)
    owner_client.post(
        reverse("controlpanel:member_role", args=[project.slug, membership.public_id]), {"role": "viewer"}
    )
    owner_client.post(reverse("controlpanel:member_remove", args=[project.slug, membership.public_id]))
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_member_of_other_project_cannot_be_touched(owner_client, project, outsider):
    foreign = Membership.objects.get(user=outsider)
    url = reverse("controlpanel:member_role", args=[project.slug, foreign.public_id])
    assert owner_client.post(url, {"role": "viewer"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.role == Role.OWNER


def test_members_page_query_count(owner_client, project, member_of, django_assert_max_num_queries):
    for role in [Role.VIEWER, Role.MARKETER, Role.ADMIN] * 3:
        member_of(role)
    with django_assert_max_num_queries(12):
        response = owner_client.get(reverse("controlpanel:members", args=[project.slug]))
    assert response.status_code == 200
    assert response.content.count(b"Remove") >= 10


def test_login_logout_and_password_change(client, owner, project):
    password = PASSWORD
    response = client.post(reverse("login"), {"username": owner.email.upper(), "password": password})
    assert response.status_code == 302
    assert client.get("/").status_code == 302  # -> dashboard
    response = client.post(
        reverse("password_change"),
        {
            "old_password": password,
            "new_password1": "An0ther-long-phrase",
            "new_password2": "An0ther-long-phrase",
        },
    )
    assert response.status_code == 302
    client.post(reverse("logout"))
    assert client.get(reverse("controlpanel:dashboard", args=[project.slug])).status_code == 302
    again = client.post(reverse("login"), {"username": owner.email, "password": "An0ther-long-phrase"})
    assert again.status_code == 302


def test_password_reset_sends_a_working_link(client, owner):
    client.post(reverse("password_reset"), {"email": owner.email})
    assert len(mail.outbox) == 1
    path = re.search(r"https?://[^/]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(path, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "Fresh-passphrase-42", "new_password2": "Fresh-passphrase-42"},
    )
    assert done.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("Fresh-passphrase-42")


def test_login_is_throttled_after_repeated_failures(client, owner, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": owner.email, "password": "wrong"})
    response = client.post(reverse("login"), {"username": owner.email, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
