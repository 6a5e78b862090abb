"""The notification's email as a batch sends it: built once, then addressed to one
customer at a time.

Over SMTP the message's bytes are built once per batch too, all but the three headers
that belong to each customer (To, Message-ID, Date), which are folded on their own and
put in front: building each email whole through Django (the MIME message, every header
folded, the addresses parsed three times) took about a fifth of the job's CPU (README,
*Measured*: the job). Other connections (memory, console) are given a Django
EmailMessage per customer, as before."""

import smtplib
from email.utils import formatdate

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from .models import Notification

PER_CUSTOMER = ("To", "Message-ID", "Date")


class Mailing:
    def __init__(self, notification: Notification, connection: BaseEmailBackend) -> None:
        self.notification, self.connection = notification, connection
        connection.open()  # an SMTP backend opens its smtplib client here, if not yet open
        client = getattr(connection, "connection", None)
        # The smtplib client the messages go through, if the connection is SMTP.
        self.smtp = client if isinstance(client, smtplib.SMTP) else None
        email = self.email(to=[], message_id="")
        self.encoding = email.encoding or settings.DEFAULT_CHARSET
        self.sender = sanitize_address(email.from_email, self.encoding)
        shared = email.message()
        for name in PER_CUSTOMER:
            del shared[name]
        # Lines end in CRLF, as Django's SMTP backend sends them (Django's own as_bytes()
        # takes the line ending; the stubs know only the email package's).
        self.shared = shared.as_bytes(linesep="\r\n")  # type: ignore[call-arg]
        self.policy = shared.policy.clone(linesep="\r\n")

    def send_to(self, customer: User) -> None:
        """Hand the email to the connection for this customer; smtplib's exceptions
        (refusals, a lost connection) as they come."""
        if self.smtp is None:
            self.email(to=[customer.email], message_id=self.message_id(customer)).send()
            return
        address = sanitize_address(customer.email, self.encoding)
        headers = {
            "To": address,
            "Message-ID": self.message_id(customer),
            "Date": formatdate(localtime=settings.EMAIL_USE_LOCALTIME),
        }
        own = b"".join(self.policy.fold_binary(name, value) for name, value in headers.items())
        self.smtp.sendmail(self.sender, [address], own + self.shared)

    def email(self, to: list[str], message_id: str) -> EmailMessage:
        return EmailMessage(
            subject=self.notification.message,
            body=self.notification.message,
            to=to,
            headers={"Message-ID": message_id},
            connection=self.connection,
        )

    def message_id(self, customer: User) -> str:
        # The same for every attempt: a mail client can drop a copy it already has.
        return f"<{self.notification.id}.{customer.pk}@storefront>"
