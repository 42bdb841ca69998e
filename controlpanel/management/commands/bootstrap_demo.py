"""Create the demo project and its owner on the first `make run`; print the login every time."""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from controlpanel.models import Project, User
from controlpanel.services import SYSTEM, create_project

DEMO_EMAIL = "demo@example.com"
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo project and owner once (embedded mode); print URL and login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    @transaction.atomic
    def handle(self, *args, url: str, **options) -> None:
        password_file = settings.VAR_DIR / "demo_password"
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            password = secrets.token_urlsafe(9)
            user = User.objects.create_user(
                DEMO_EMAIL, password, name="Demo Owner", is_staff=True, is_superuser=True
            )
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip() if password_file.is_file() else "(changed by you)"
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = create_project(
                name="Demo Shop",
                owner=user,
                slug=DEMO_SLUG,
                time_zone="Europe/Berlin",
                default_country="DE",
                actor=SYSTEM,
            )
        if settings.SIMULATOR_ENABLED:
            connect_to_simulator(project, url)
        self.stdout.write(
            self.style.SUCCESS(f"\n  Control panel: {url}\n  Log in as {DEMO_EMAIL} / {password}\n")
        )


def connect_to_simulator(project: Project, url: str) -> None:
    """Connect the demo project to the built-in simulator and give it approved demo templates.

    Idempotent: an existing connection keeps its ids and secrets (only a simulator URL that moved,
    e.g. another port, is updated); a real Meta connection is left alone.
    """
    from urllib.parse import urlsplit

    from whatsapp.endpoints import allowed_base_url
    from whatsapp.models import WhatsAppAccount
    from whatsapp.services import save_connection
    from whatsapp.simulator.services import seed_templates

    base_url = url.rstrip("/") + "/simulator/graph"
    if not allowed_base_url(base_url):
        # The panel calls its own simulator; on a non-loopback --url that is still 127.0.0.1.
        parts = urlsplit(url)
        base_url = f"{parts.scheme or 'http'}://127.0.0.1:{parts.port or 80}/simulator/graph"
        if not allowed_base_url(base_url):
            return
    account = WhatsAppAccount.objects.for_project(project).order_by("created_at").first()
    if account is None:
        fields = {
            "base_url": base_url,
            "waba_id": str(10**14 + secrets.randbelow(9 * 10**14)),
            "phone_number_id": str(10**14 + secrets.randbelow(9 * 10**14)),
            "display_phone_number": "15550001234",
            "verified_name": project.name,
            "access_token": secrets.token_urlsafe(32),
            "app_secret": secrets.token_urlsafe(32),
        }
        account = save_connection(project=project, account=None, fields=fields, actor=SYSTEM)
    elif "/simulator/" not in account.base_url:
        return
    elif account.base_url != base_url:
        account = save_connection(
            project=project, account=account, fields={"base_url": base_url}, actor=SYSTEM
        )
    seed_templates(waba_id=account.waba_id)
