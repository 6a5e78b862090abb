from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create N demo customers (active users with an email address), in bulk."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)

    def handle(self, count, **options):
        User = get_user_model()
        start = User.objects.count()
        # Demo customers never log in: one unusable password, hashed once.
        password = make_password(None)
        User.objects.bulk_create(
            (
                User(username=f"customer{n}", email=f"customer{n}@example.com", password=password)
                for n in range(start, start + count)
            ),
            batch_size=1000,
        )
        self.stdout.write(f"Created {count} customers.")
