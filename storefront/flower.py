"""What flowerconfig.py adds to Flower: credentials worth the name in production,
failed logins in the log (Flower logs none; the upstream report is
docs/upstream/flower-failed-logins-are-not-logged.md) and slowed down, and an API that
only reads unless the operator turns its controls on."""

import logging
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from django.contrib.auth.password_validation import (
    CommonPasswordValidator,
    MinimumLengthValidator,
    validate_password,
)
from django.core.exceptions import ValidationError
from tornado.routing import URLSpec
from tornado.web import HTTPError, RequestHandler

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
        FAILED_LOGINS.add(str(handler.request.remote_ip))


class FailedLogins:
    """The failed logins of each client address in the last WINDOW seconds. From the
    LIMIT-th on, that address is refused without its password being checked until the
    oldest of them is WINDOW seconds old: LIMIT guesses a minute, where Flower took
    thousands a second. One Flower process, so its memory is the whole count."""

    LIMIT = 5
    WINDOW = 60.0

    def __init__(self) -> None:
        self.failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def add(self, address: str) -> None:
        self.failures[address].append(time.monotonic())

    def locked_out(self, address: str) -> bool:
        failures = self.failures.get(address)
        if failures is None:
            return False
        while failures and failures[0] < time.monotonic() - self.WINDOW:
            failures.popleft()
        if not failures:
            del self.failures[address]
        return len(failures) >= self.LIMIT


FAILED_LOGINS = FailedLogins()


def guard(handlers: list[Any], allow_control: bool) -> None:
    """Put each of Flower's routes (flower.urls.handlers, in place) behind the failed
    logins' lockout; and each that acts on the cluster, every POST of its API (sending or
    running a task, revoke, abort, time and rate limits, the pool, consumers, shutdown),
    behind the login and then `allow_control`. Each control call is logged, refused
    (403) or let through. A subclass per route: Flower's own classes stay as they are."""
    for index, route in enumerate(handlers):
        if isinstance(route, URLSpec):
            guarded = guarded_handler(route.target, acts=False, allow_control=allow_control)
            handlers[index] = URLSpec(route.regex.pattern, guarded, route.kwargs, route.name)
        else:
            pattern, handler, *rest = route
            acts = pattern.startswith("/api/") and handler.post is not RequestHandler.post
            guarded = guarded_handler(handler, acts=acts, allow_control=allow_control)
            handlers[index] = (pattern, guarded, *rest)


def guarded_handler(
    handler: type[RequestHandler], acts: bool, allow_control: bool
) -> type[RequestHandler]:
    def prepare(self: RequestHandler) -> Any:
        address = str(self.request.remote_ip)
        if FAILED_LOGINS.locked_out(address):
            logger.warning("Refused %s from %s: too many failed logins", self.request.path, address)
            raise HTTPError(429, "Too many failed logins from this address; try again later.")
        prepared = handler.prepare(self)
        if acts and self.request.method == "POST":
            if not self.current_user:  # wrong credentials raise 401 here
                raise HTTPError(403)
            if not allow_control:
                logger.warning(
                    "Refused control call %s from %s: FLOWER_ALLOW_CONTROL is off",
                    self.request.path,
                    address,
                )
                raise HTTPError(403, "Flower only reads here: FLOWER_ALLOW_CONTROL is off.")
            logger.warning("Control call %s from %s", self.request.path, address)
        return prepared

    return type(handler.__name__, (handler,), {"prepare": prepare})
