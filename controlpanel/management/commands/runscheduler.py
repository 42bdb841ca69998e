import contextlib

from django.core.management.base import BaseCommand

from controlpanel import scheduler


class Command(BaseCommand):
    help = "Run the scheduler (exactly one per deployment): enqueues the periodic jobs."

    def handle(self, *args, **options) -> None:
        names = ", ".join(f"{job.name} every {job.seconds}s" for job in scheduler.jobs())
        self.stdout.write(f"Scheduler running: {names}")
        with contextlib.suppress(KeyboardInterrupt):
            scheduler.build(blocking=True).start()
