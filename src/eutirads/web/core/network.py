"""The client's address, for login throttling (django-axes) and the audit log.

Behind a TLS proxy every request comes from the proxy. Only when the direct peer
(REMOTE_ADDR) is one of EUTIRADS_TRUSTED_PROXIES is the forwarding header believed, and
then the right-most address in it that is not itself a trusted proxy is the client (the
left part of X-Forwarded-For is whatever the client chose to send).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

__all__ = ["client_ip"]


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The client's IP address, or None when there is no request or no usable address."""
    if request is None:
        return None
    peer = _valid(request.META.get("REMOTE_ADDR") or "")
    trusted = set(getattr(settings, "EUTIRADS_TRUSTED_PROXIES", ()))
    if peer is None or peer not in trusted:
        return peer
    header = getattr(settings, "EUTIRADS_CLIENT_IP_HEADER", "HTTP_X_FORWARDED_FOR")
    hops = [h for h in (request.META.get(header) or "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = _valid(hop)
        if address is None:
            return peer  # a malformed header: fall back to the proxy rather than guess
        if address not in trusted:
            return address
    return peer
