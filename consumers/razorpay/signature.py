"""Razorpay webhook signatures: hex HMAC-SHA256 of the raw body, keyed by the webhook secret.

The signature arrives in ``X-Razorpay-Signature``. It is computed over the bytes exactly as
received: verify before parsing, never over re-serialized JSON.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

SIGNATURE_HEADER = "x-razorpay-signature"


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def sign(body: bytes, secret: str | bytes | SecretStr) -> str:
    """The signature Razorpay sends for ``body``: lowercase hex HMAC-SHA256."""
    return hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secret: str | bytes | SecretStr) -> bool:
    """Whether ``signature`` is the signature of ``body``, compared in constant time.

    A missing, empty or non-ASCII signature is simply wrong; an empty secret verifies nothing.
    """
    key = _key(secret)
    if not signature or not key:
        return False
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    expected = hmac.digest(key, body, "sha256").hex().encode("ascii")  # OpenSSL's one-shot
    return hmac.compare_digest(expected, given)
