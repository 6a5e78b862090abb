"""`make run`'s mail catcher keeps only the newest emails (harness/mailcatcher.py),
run as the Procfile runs it and sent real SMTP."""

import mailbox
import smtplib
from email.message import EmailMessage

from celery_guarantees.testing.servers import free_port

from conftest import port_open, procfile_command, wait_until


def test_the_mail_catcher_keeps_only_the_newest_emails(start, tmp_path):
    port, maildir = free_port(), tmp_path / "mail"
    argv = procfile_command("mail")
    argv[argv.index("127.0.0.1:2525")] = f"127.0.0.1:{port}"
    argv[argv.index(".run/mail")] = str(maildir)
    # Serving once it takes connections (its Maildir may come first).
    start("mail", [*argv, "5"], ready=lambda: maildir.exists() and port_open(port))

    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(12):
            email = EmailMessage()
            email["From"], email["To"], email["Subject"] = "a@example.com", "b@example.com", str(n)
            smtp.send_message(email)

    def subjects():
        return sorted(int(message["Subject"]) for message in mailbox.Maildir(maildir))

    wait_until(lambda: subjects() == [7, 8, 9, 10, 11], what="the newest 5 emails")
