"""Create the demo project and its owner on the first `make run`; print the login every time."""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from controlpanel import demo
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
        demo.seed(project, url)
        self.stdout.write(
            self.style.SUCCESS(f"\n  Control panel: {url}\n  Log in as {DEMO_EMAIL} / {password}\n")
        )
