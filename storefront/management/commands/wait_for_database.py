"""`python manage.py wait_for_database`: compose's web runs it before its migrations,
so that a web started before its database (a first start, a host's reboot, a Podman
that ignores `service_healthy`) waits for it with one line instead of crashing on it
and being restarted, a traceback each time."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection


class Command(BaseCommand):
    help = "Wait until the database takes connections (at most --timeout seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60)

    def handle(self, *args, timeout: float, **options) -> None:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                connection.ensure_connection()
                return
            except OperationalError as error:
                if time.monotonic() > deadline:
                    # Its first line: the driver's next ones are hints for a person.
                    reason = str(error).splitlines()[0]
                    raise CommandError(
                        f"the database did not take connections within {timeout:g} s: {reason}"
                    ) from error
                if not said:
                    self.stderr.write("Waiting for the database to take connections...")
                    said = True
                time.sleep(0.5)
