"""Who a request comes from, as the admin's login throttle counts it (django-axes asks
`client_address`: AXES_CLIENT_IP_CALLABLE).

In production every request reaches gunicorn through the proxy (docker-compose.yml's
`proxy`, nginx), so its peer is the proxy; the proxy writes the address it saw in
X-Real-IP, replacing whatever the client sent there. The header is believed only from
a peer in TRUSTED_PROXIES: from anyone else it says what its sender wants, and the
peer's own address counts. Never X-Forwarded-For's leftmost address, which a client
writes: rotating it would escape the limit, and a request without it would share one
bucket (and one lockout) with every other."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    peer = request.META.get("REMOTE_ADDR", "")
    if not trusted(peer):
        return peer
    try:
        return str(ipaddress.ip_address(request.META.get("HTTP_X_REAL_IP", "").strip()))
    except ValueError:  # our proxy always sets it: a request without is not from it
        return peer


def trusted(peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in settings.TRUSTED_PROXIES)
