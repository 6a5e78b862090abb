"""What the in-process tests of the playground share (those that start real processes
use the project's conftest.py)."""

import pytest


@pytest.fixture
def customers(django_user_model):
    """Five active users with an email address, in the test database."""
    return [
        django_user_model.objects.create(username=f"c{n}", email=f"c{n}@example.com")
        for n in range(5)
    ]
