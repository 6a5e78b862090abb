"""Whom the admin's login throttle counts a request against: the peer, or the client
that a trusted proxy saw (storefront/client_address.py). Through the real proxy:
deploy/tests (the compose lane)."""

import ipaddress

import pytest
from django.test import RequestFactory

from storefront.client_address import client_address

PROXY = "172.29.53.2"


@pytest.fixture(autouse=True)
def trusted_proxy(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(PROXY)]


def request_from(peer, **headers):
    return RequestFactory().get("/admin/login/", REMOTE_ADDR=peer, headers=headers)


def test_a_request_from_the_proxy_counts_against_the_address_the_proxy_saw():
    assert client_address(request_from(PROXY, x_real_ip="203.0.113.7")) == "203.0.113.7"


def test_a_request_from_anyone_else_counts_against_its_peer_whatever_it_claims():
    forged = request_from("198.51.100.9", x_real_ip="203.0.113.7", x_forwarded_for="203.0.113.7")

    assert client_address(forged) == "198.51.100.9"


def test_x_forwarded_for_never_decides_not_even_through_the_proxy():
    rotated = [
        request_from(PROXY, x_real_ip="198.51.100.9", x_forwarded_for=f"10.0.0.{n}, 198.51.100.9")
        for n in range(3)
    ]

    assert {client_address(request) for request in rotated} == {"198.51.100.9"}


@pytest.mark.parametrize("header", [None, "", "not-an-address", "203.0.113.7, 10.0.0.1"])
def test_a_request_from_the_proxy_without_one_valid_address_counts_against_the_proxy(header):
    headers = {} if header is None else {"x_real_ip": header}

    assert client_address(request_from(PROXY, **headers)) == PROXY


def test_trusted_proxies_may_be_networks(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("172.29.53.0/29")]

    assert client_address(request_from("172.29.53.5", x_real_ip="203.0.113.7")) == "203.0.113.7"
