from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from controlpanel.models import COUNTRY_CHOICES, TIME_ZONE_CHOICES, Project, User
from controlpanel.services import SYSTEM, create_project


class Command(BaseCommand):
    help = "Create a project with an owner (the owner's account is created if needed). Prints the slug."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner", required=True, help="Owner's email address.")
        parser.add_argument("--password", help="Password for a new owner account.")
        parser.add_argument("--slug", help="URL slug (default: derived from the name).")
        parser.add_argument("--time-zone", default="UTC")
        parser.add_argument("--country", default="DE", help="Default country for phone numbers.")

    @transaction.atomic
    def handle(self, *args, name: str, owner: str, password: str | None, slug: str | None, **options):
        try:
            validate_email(owner)
        except ValidationError:
            raise CommandError(f"--owner: {owner!r} is not an email address.") from None
        time_zone, country = options["time_zone"], options["country"].upper()
        if time_zone not in dict(TIME_ZONE_CHOICES):
            raise CommandError(f"--time-zone: unknown time zone {time_zone!r}.")
        if country not in dict(COUNTRY_CHOICES):
            raise CommandError(f"--country: {country!r} is not a two-letter region code.")
        if slug and Project.objects.filter(slug=slug).exists():
            raise CommandError(f"A project with the slug {slug!r} exists already.")
        user = User.objects.filter(email__iexact=owner).first()
        if user is None:
            user = User.objects.create_user(owner, password)
        elif password:
            raise CommandError(f"{owner} already has an account; --password is only for new ones.")
        project = create_project(
            name=name,
            owner=user,
            slug=slug,
            time_zone=time_zone,
            default_country=country,
            actor=SYSTEM,
        )
        self.stdout.write(project.slug)
