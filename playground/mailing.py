"""The notification's email as a batch sends it: built once, then addressed to one
customer at a time.

Over SMTP the message's bytes are built once per batch too, all but the three headers
that belong to each customer (To, Message-ID, Date), which are folded on their own and
put in front: building each email whole through Django (the MIME message, every header
folded, the addresses parsed three times) took about a fifth of the job's CPU
(docs/measured.md: the job). Other connections (memory, console) are given a Django
EmailMessage per customer, as before."""

import smtplib
from collections.abc import Callable
from contextlib import suppress
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

    def send_to(self, customer: User, before_handover: Callable[[], object] = lambda: None) -> None:
        """Hand the email to the connection for this customer, calling `before_handover`
        just before: over SMTP once the server has accepted the sender and the recipient,
        before DATA (nothing is delivered before DATA, so what it records stays true
        however long the server makes the client wait); otherwise as sending starts.
        smtplib's exceptions (refusals, a lost connection) as they come; after a refusal,
        or an error of `before_handover`, the connection serves the next customer."""
        message_id = self.message_id(customer)
        if self.smtp is None:
            before_handover()
            self.email(to=[customer.email], message_id=message_id).send()
            return
        address = sanitize_address(customer.email, self.encoding)
        headers = {
            "To": address,
            "Message-ID": message_id,
            "Date": formatdate(localtime=settings.EMAIL_USE_LOCALTIME),
        }
        own = b"".join(self.policy.fold_binary(name, value) for name, value in headers.items())
        # smtplib's sendmail() in its public steps, with the handover's moment between.
        smtp = self.smtp
        smtp.ehlo_or_helo_if_needed()
        code, reply = smtp.mail(self.sender)
        if code != 250:
            drop_transaction(smtp, code)
            raise smtplib.SMTPSenderRefused(code, reply, self.sender)
        code, reply = smtp.rcpt(address)
        if code not in (250, 251):
            drop_transaction(smtp, code)
            raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
        try:
            before_handover()
        except BaseException:
            drop_transaction(smtp)  # nothing was handed over
            raise
        code, reply = smtp.data(own + self.shared)
        if code != 250:
            drop_transaction(smtp, code)
            raise smtplib.SMTPDataError(code, reply)

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


def drop_transaction(smtp: smtplib.SMTP, code: int = 0) -> None:
    """End the SMTP transaction so that the connection serves the next message, as
    smtplib's sendmail() does after a refusal: a server that answered 421 is closing the
    connection, and one already gone has nothing to end."""
    if code == 421:
        smtp.close()
        return
    with suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()
