"""kombu's connection, keeping a transport named by its class path as it keeps one a
URL names.

Given several broker URLs (`redis://a;redis://b`, or the Sentinels of `sentinel://...`),
kombu moves to the next one on a connection error (`Connection.switch`) and takes the
transport from that URL's scheme, dropping the one Celery's broker_transport named: a
worker would go on with stock kombu after its first failover
(docs/kombu-switch-drops-the-named-transport.md; upstream, the patch
patches/kombu-5.7.0-switch-keeps-the-named-transport.patch). And a rediss:// URL without TLS
options gets kombu's TLS defaults only when the URL names the transport: named by path,
it would connect without TLS (upstream, with the URL's scheme in `as_uri()`:
patches/kombu-5.7.0-named-transport-keeps-the-urls-scheme.patch). Celery builds its
connections from its AMQP class: `Celery(..., amqp="celery_guarantees.connection:AMQP")`."""

import logging
from ssl import CERT_NONE
from typing import Any
from urllib.parse import urlsplit

from celery.app.amqp import AMQP as CeleryAMQP
from kombu import Connection as KombuConnection

logger = logging.getLogger(__name__)


class Connection(KombuConnection):
    # kombu's arguments up to `transport`, which may come by position (kombu's pickling).
    def __init__(
        self, hostname: Any = "localhost", userid: Any = None, password: Any = None,
        virtual_host: Any = None, port: Any = None, insist: bool = False, ssl: Any = False,
        transport: Any = None, *args: Any, **kwargs: Any,
    ) -> None:  # fmt: skip
        self.named_transport = transport
        if transport is not None and not ssl and is_rediss(hostname):
            # kombu's own default and warning for rediss:// without TLS options.
            logger.warning(
                "Secure redis scheme specified (rediss) with no ssl options, defaulting to"
                " insecure SSL behaviour."
            )
            ssl = {"ssl_cert_reqs": CERT_NONE}
        super().__init__(
            hostname, userid, password, virtual_host, port, insist, ssl, transport,
            *args, **kwargs,
        )  # fmt: skip

    def switch(self, conn_str: str) -> None:
        super().switch(conn_str)
        if self.named_transport is not None:
            self.transport_cls = self.named_transport


def is_rediss(hostname: Any) -> bool:
    return isinstance(hostname, str) and urlsplit(hostname.split(";")[0]).scheme == "rediss"


class AMQP(CeleryAMQP):
    Connection = Connection
    BrokerConnection = Connection
