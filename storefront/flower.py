"""What flowerconfig.py adds to Flower: credentials worth the name in production, and
failed logins in the log (Flower logs none; the upstream report is
docs/upstream/flower-failed-logins-are-not-logged.md)."""

import logging
from typing import TYPE_CHECKING

from django.contrib.auth.password_validation import (
    CommonPasswordValidator,
    MinimumLengthValidator,
    validate_password,
)
from django.core.exceptions import ValidationError
from tornado.web import RequestHandler

if TYPE_CHECKING:  # a protocol of the stubs only
    from django.contrib.auth.password_validation import PasswordValidator

logger = logging.getLogger("flower.auth")

# A password guessed over HTTP: Flower does not slow guessers down (12,460 tries in
# 10 s on one machine), so only length and rarity stand between them and the cluster.
STRONG: "list[PasswordValidator]" = [
    MinimumLengthValidator(min_length=12),
    CommonPasswordValidator(),
]


def weakness(basic_auth: str) -> str | None:
    """Why these comma-separated user:password pairs are too weak, or None."""
    for pair in basic_auth.split(","):
        user, _, password = pair.partition(":")
        if not user or not password:
            return "each entry must be user:password"
        if password.lower() == user.lower():
            return "a password must not be its user name"
        try:
            validate_password(password, password_validators=STRONG)
        except ValidationError as error:
            return " ".join(error.messages)
    return None


def log_failed_logins(handler: RequestHandler) -> None:
    """tornado's log_function: a 401 to a request that brought credentials is a failed
    login (a browser's first request brings none and is no failure)."""
    if handler.get_status() == 401 and "Authorization" in handler.request.headers:
        logger.warning(
            "Failed login from %s for %s", handler.request.remote_ip, handler.request.path
        )
