from typing import Any

from django.core.management.base import BaseCommand

from playground import poison


class Command(BaseCommand):
    help = (
        "Moves what RabbitMQ dead-lettered (queue celery.dead) into the admin's poison"
        " messages, where each can be inspected and replayed; drops those that expired."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        kept, dropped = poison.keep_dead_letters()
        self.stdout.write(
            f"Kept {kept} dead-lettered message(s) as poison messages; dropped {dropped}"
            " that had expired."
        )
