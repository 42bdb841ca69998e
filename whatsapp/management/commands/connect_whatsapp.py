"""Create or update a project's WhatsApp connection from the command line.

Prints webhook_url=, phone_number_id=, waba_id= and verify_token=, one key=value
a line; never the secrets.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from controlpanel.models import Project
from controlpanel.services import Actor
from whatsapp.models import META_GRAPH_URL, WhatsAppAccount
from whatsapp.services import save_connection

SIMULATOR_PATH = "/simulator/graph"


def public_url(given: str, account: WhatsAppAccount | None) -> tuple[str, str]:
    """This panel's base URL, and what it was guessed from when nobody said it.

    A wrong port here points the simulator's Graph URL, and so its webhook calls, at nothing.
    """
    if given or settings.PUBLIC_BASE_URL:
        return (given or settings.PUBLIC_BASE_URL).rstrip("/"), ""
    if account is not None and account.base_url.endswith(SIMULATOR_PATH):
        return account.base_url.removesuffix(SIMULATOR_PATH), "the connection's simulator URL"
    host = os.environ.get("HOST", "")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - a bind address is no URL
    return f"http://{host}:{os.environ.get('PORT', '8000')}", "HOST and PORT, as `manage.py serve` reads them"


class Command(BaseCommand):
    help = "Connect a project to WhatsApp (Meta's Cloud API, or the built-in simulator with --simulator)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--simulator", action="store_true", help="Use the built-in Cloud API simulator.")
        parser.add_argument("--access-token", default=os.environ.get("WHATSAPP_ACCESS_TOKEN", ""))
        parser.add_argument("--app-secret", default=os.environ.get("WHATSAPP_APP_SECRET", ""))
        parser.add_argument("--waba-id", default=os.environ.get("WHATSAPP_WABA_ID", ""))
        parser.add_argument("--phone-number-id", default=os.environ.get("WHATSAPP_PHONE_NUMBER_ID", ""))
        parser.add_argument(
            "--display-phone-number", default=os.environ.get("WHATSAPP_DISPLAY_PHONE_NUMBER", "")
        )
        parser.add_argument("--graph-version", default="v23.0")
        parser.add_argument(
            "--base-url",
            default="",
            help="Graph API base URL (default: Meta's; with --simulator: <PUBLIC_BASE_URL>/simulator/graph).",
        )
        parser.add_argument(
            "--public-url",
            default="",
            help="This panel's URL, for the printed webhook URL and the simulator "
            "(default: PUBLIC_BASE_URL, else http://$HOST:$PORT as `manage.py serve` reads them).",
        )

    def handle(self, *args, slug: str, **o) -> None:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with the slug {slug!r}.")
        account = WhatsAppAccount.objects.for_project(project).order_by("created_at").first()
        public, guessed_from = public_url(o["public_url"], account)
        if guessed_from:
            self.stderr.write(
                f"PUBLIC_BASE_URL is not set: using {public} ({guessed_from}); "
                "pass --public-url if the panel is served elsewhere."
            )
        if o["simulator"]:
            fields = {
                "base_url": o["base_url"] or f"{public}{SIMULATOR_PATH}",
                "waba_id": o["waba_id"]
                or (account.waba_id if account else str(10**14 + secrets.randbelow(10**14))),
                "phone_number_id": o["phone_number_id"]
                or (account.phone_number_id if account else str(10**14 + secrets.randbelow(10**14))),
                "display_phone_number": o["display_phone_number"]
                or (account.display_phone_number if account else "15550001234"),
                # The simulator accepts exactly this token and signs with exactly this secret.
                "access_token": o["access_token"] or ("" if account else secrets.token_urlsafe(32)),
                "app_secret": o["app_secret"] or ("" if account else secrets.token_urlsafe(32)),
            }
        else:
            missing = [
                n
                for n in ("access_token", "app_secret", "waba_id", "phone_number_id")
                if not o[n] and not account
            ]
            if missing:
                names = ", ".join("--" + n.replace("_", "-") for n in missing)
                raise CommandError(f"Missing {names} (or WHATSAPP_* environment variables).")
            fields = {
                "base_url": o["base_url"] or META_GRAPH_URL,
                **{n: o[n] for n in ("waba_id", "phone_number_id", "display_phone_number") if o[n]},
                "access_token": o["access_token"],
                "app_secret": o["app_secret"],
            }
        fields["graph_version"] = o["graph_version"]
        taken = WhatsAppAccount.objects.filter(phone_number_id=fields.get("phone_number_id", ""))
        if account is not None:
            taken = taken.exclude(pk=account.pk)
        if taken.exists():
            raise CommandError(
                f"phone_number_id {fields['phone_number_id']} is connected to another project."
            )
        try:
            account = save_connection(
                project=project, account=account, fields=fields, actor=Actor(label="manage.py")
            )
        except ValueError as exc:
            hint = " (is SIMULATOR_ENABLED on?)" if o["simulator"] else " (see WHATSAPP_EXTRA_BASE_URLS)"
            raise CommandError(f"{exc}{hint}") from None
        webhook = public + reverse("whatsapp_webhook", args=[account.public_id])
        self.stdout.write(f"webhook_url={webhook}")
        self.stdout.write(f"phone_number_id={account.phone_number_id}")
        self.stdout.write(f"waba_id={account.waba_id}")
        self.stdout.write(f"verify_token={account.verify_token}")
