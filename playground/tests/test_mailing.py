"""Over SMTP a batch builds its email once and addresses it to each customer
(playground/mailing.py): what a real SMTP server receives is what it receives when
Django builds and sends that customer's email, header for header."""

import uuid
from datetime import timedelta
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime

import pytest
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from conftest import Inbox, serving
from playground.mailing import Mailing
from playground.models import Notification

pytestmark = pytest.mark.django_db

LONG = "Spring sale: 20 % off everything this week, with Grüße from the storefront team " * 2


@pytest.fixture
def inbox():
    """A real SMTP server, in this process."""
    with serving(Inbox()) as inbox:
        yield inbox


def readable(message):
    """Its headers, unfolded and decoded, but the Date."""
    return {
        name: str(make_header(decode_header(value)))
        for name, value in message.items()
        if name != "Date"
    }


@pytest.mark.parametrize(
    ("text", "address"), [("Hello", "c0@example.com"), (LONG, "zoe@exämple.com")]
)
def test_each_customer_receives_the_email_django_would_build_for_them(
    inbox, django_user_model, text, address
):
    customers = [
        django_user_model.objects.create(username=f"c{n}", email=address.replace("@", f"{n}@"))
        for n in range(2)
    ]
    notification = Notification.objects.create(id=uuid.uuid4(), message=text)

    with SMTPBackend(host="127.0.0.1", port=inbox.port) as connection:
        mailing = Mailing(notification, connection)
        for customer in customers:
            mailing.send_to(customer)
            # The same customer's email, built and sent by Django as the course does.
            mailing.email(to=[customer.email], message_id=mailing.message_id(customer)).send()

    assert len(inbox.messages) == 2 * len(customers)
    for ours, djangos in zip(inbox.messages[::2], inbox.messages[1::2], strict=True):
        assert readable(ours) == readable(djangos)
        assert ours.get_payload(decode=True) == djangos.get_payload(decode=True)
        dates = [parsedate_to_datetime(message["Date"]) for message in (ours, djangos)]
        assert abs(dates[0] - dates[1]) < timedelta(minutes=1)  # the moment it is sent
