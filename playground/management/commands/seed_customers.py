from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create N demo customers (active users with an email address), in bulk."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)
        parser.add_argument("--database", default="default", help="The database to seed.")

    def handle(self, count, database, **options):
        User = get_user_model()
        users = User.objects.db_manager(database)
        # Numbered after the highest customer there is: deleting one never makes a
        # later run reuse a username.
        seeded = users.filter(username__regex=r"^customer[0-9]+$")
        numbers = [
            int(name[len("customer") :]) for name in seeded.values_list("username", flat=True)
        ]
        start = max(numbers, default=-1) + 1
        # Demo customers never log in: one unusable password, hashed once.
        password = make_password(None)
        users.bulk_create(
            (
                User(username=f"customer{n}", email=f"customer{n}@example.com", password=password)
                for n in range(start, start + count)
            ),
            batch_size=1000,
        )
        self.stdout.write(f"Created {count} customers.")
