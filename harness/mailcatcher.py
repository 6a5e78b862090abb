"""`make run`'s mail catcher: aiosmtpd's Maildir handler (one file per email in
.run/mail/new; `mutt -f .run/mail` reads it), keeping only the newest KEEP emails.

Why a bound: the course's Beat demo emails every customer every 5 seconds, so with
10,000 seeded customers a catcher that kept everything filled the disk at about 3 GB an
hour. 1,000 emails (a few MB) are more than a person reads, and the newest are the
ones worth reading. Run as `python -m aiosmtpd -c harness.mailcatcher.BoundedMailbox DIR
[KEEP]` (the Procfile's `mail`)."""

from argparse import ArgumentParser
from collections import deque
from email.message import Message
from pathlib import Path

from aiosmtpd.handlers import Mailbox

KEEP = 1000


class BoundedMailbox(Mailbox):
    def __init__(self, mail_dir: str, keep: int = KEEP):
        super().__init__(Path(mail_dir))
        self.keep = keep
        # What an earlier run kept, oldest first (a Maildir message's date is its arrival).
        arrived = {key: message.get_date() for key, message in self.mailbox.iteritems()}
        self.kept = deque(sorted(arrived, key=arrived.__getitem__))
        self.drop_oldest()

    def handle_message(self, message: Message) -> None:
        self.kept.append(self.mailbox.add(message))
        self.drop_oldest()

    def drop_oldest(self) -> None:
        while len(self.kept) > self.keep:
            self.mailbox.discard(self.kept.popleft())

    @classmethod
    def from_cli(cls, parser: ArgumentParser, *args: str) -> "BoundedMailbox":
        if not 1 <= len(args) <= 2:
            parser.error("usage: -c harness.mailcatcher.BoundedMailbox MAIL_DIR [KEEP]")
        return cls(args[0], *(int(keep) for keep in args[1:]))
