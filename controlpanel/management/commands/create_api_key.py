from django.core.management.base import BaseCommand, CommandError

from controlpanel.models import Project
from controlpanel.services import Actor, create_api_key


class Command(BaseCommand):
    help = "Create an API key for a project and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="Created by manage.py")

    def handle(self, *args, slug: str, name: str, **options) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with the slug {slug!r}.")
        _, raw = create_api_key(project=project, name=name, actor=Actor(label="manage.py"))
        self.stdout.write(raw)
