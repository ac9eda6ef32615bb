"""`webhook`: one HTTP request per message, in stream order, signed the Standard Webhooks way when a secret is set.

Requests go out one at a time over one `httpx.Client` per sink (pooled connections), so messages of the same item
key can never overtake each other. Each request carries `Idempotency-Key` (and, when signed, `webhook-id`) set to
the stream record's eventID: a receiver can drop the duplicates that retries produce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpcore
import httpx

import consumer
from consumer.addresses import IpAddress, forbidden
from consumer.config import EnvRef, WebhookSinkConfig, whsec_key
from consumer.errors import (
    DeliveryError,
    NotSentError,
    PermanentDeliveryError,
    RetryAfterError,
    StartupError,
    TooManyRequestsError,
    TransientDeliveryError,
)
from consumer.events import StreamContext
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

USER_AGENT = f"dynamodb-streams-consumer/{consumer.__version__}"

# Statuses that say "later": request timeout, too early, throttled; and every 5xx.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# Set by the sink for every message: a configured value would be wrong for some message or break the framing.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RETRY_AFTER_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_EXCERPT_BYTES = 200
# An error body is read this far (so the connection can be reused) and no further.
_DRAIN_LIMIT_BYTES = 64 * 1024

E = TypeVar("E", bound=BaseException)


@register("webhook")
class WebhookSink:
    def __init__(self, config: WebhookSinkConfig, context: StreamContext) -> None:
        del context
        self.name = config.name
        self._method = config.method
        self._url = httpx.URL(config.url)
        # Error messages name the origin only: webhook URLs often carry a token in the path or the query.
        port = f":{self._url.port}" if self._url.port is not None else ""
        self._origin = f"{self._url.scheme}://{self._url.host}{port}"
        self._host = self._url.raw_host.decode("ascii")
        self._port = self._url.port or (443 if self._url.scheme == "https" else 80)
        self._allow_link_local = config.allow_link_local
        self._timeout = config.timeout_seconds
        # The current secret's signature first: receivers try each, and most already know the current one.
        self._keys = tuple(
            self._signing_key(value, setting)
            for setting, value in (("secret", config.secret), ("previous_secret", config.previous_secret))
            if value is not None
        )
        headers = {"User-Agent": USER_AGENT}
        for header, value in config.headers.items():
            headers[header] = self._header(header, self._resolve(value, f"headers.{header}"))
        self._client = httpx.Client(
            headers=headers,
            timeout=config.timeout_seconds,
            verify=self._verify(config),
            follow_redirects=False,
        )
        if not config.allow_link_local:
            _vet_connections(self._client)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        for index, message in enumerate(batch):
            error = self._deliver(message)
            if error is None:
                continue
            # The rest of the batch is not sent: a later message may be for the same item key and must not overtake
            # this one. They get their own transient error rather than the first message's: they were never refused,
            # and a permanent error on them would let a policy that sets permanent failures aside drop good messages.
            not_sent = NotSentError(f"not sent: an earlier message failed ({type(error).__name__})")
            return [Failure(message, error), *(Failure(rest, not_sent) for rest in batch[index + 1 :])]
        return ()

    def close(self) -> None:
        self._client.close()

    # -- one message ---------------------------------------------------------------------------------------------

    def _deliver(self, message: Message) -> DeliveryError | None:
        try:
            body = message.body.encode("utf-8")
        except UnicodeEncodeError as error:
            return PermanentDeliveryError(f"body is not valid UTF-8 text: {error.reason}")
        headers = {
            "Content-Type": _content_type(message.content_type),
            "Idempotency-Key": message.event.event_id,
        }
        if self._keys:
            timestamp = int(time.time())
            headers["webhook-id"] = message.event.event_id
            headers["webhook-timestamp"] = str(timestamp)
            # Space-separated, one per key, as the specification lays out a secret rotation.
            headers["webhook-signature"] = " ".join(
                sign(key, message.event.event_id, timestamp, body) for key in self._keys
            )
        try:
            with self._client.stream(self._method, self._url, content=body, headers=headers) as response:
                return self._outcome(response)
        except (httpx.HTTPError, OSError) as error:
            return self._delivery_error(error)

    def _delivery_error(self, error: httpx.HTTPError | OSError) -> DeliveryError:
        """What httpx raised (or the address vetting under it) as our error: the one place they are translated."""
        if isinstance(error, httpx.TimeoutException):
            return TransientDeliveryError(
                f"{self._origin}: no answer within {self._timeout:g}s ({type(error).__name__})"
            )
        if isinstance(error, httpx.HTTPError):
            return self._transport_error(error)
        return self._refusal(error) or TransientDeliveryError(f"{self._origin}: {type(error).__name__}: {error}")

    def _outcome(self, response: httpx.Response) -> DeliveryError | None:
        status = response.status_code
        if 200 <= status < 300:  # noqa: PLR2004
            # Accepted whatever the body says; reading it lets the connection go back to the pool.
            _read_some(response)
            return None
        excerpt = _excerpt(_read_some(response))
        if status in _TRANSIENT_STATUSES or status >= 500:  # noqa: PLR2004
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            kind = TooManyRequestsError if status == 429 else RetryAfterError  # noqa: PLR2004
            return kind(f"{self._origin} answered HTTP {status}{excerpt}", status, retry_after)
        if 300 <= status < 400:  # noqa: PLR2004
            return PermanentDeliveryError(
                f"{self._origin} answered HTTP {status} (redirects are not followed){excerpt}"
            )
        return PermanentDeliveryError(f"{self._origin} answered HTTP {status}{excerpt}")

    def _refusal(self, error: BaseException) -> DeliveryError | None:
        """The vetting backend's verdict, raised as it is or wrapped by httpx."""
        refused = _cause(error, _ForbiddenAddressError)
        if refused is not None:
            return PermanentDeliveryError(
                f"refused to send to {self._origin}: {refused}; "
                f"set allow_link_local: true on sink {self.name!r} if this destination is intended"
            )
        unresolvable = _cause(error, _UnresolvableError)
        return None if unresolvable is None else TransientDeliveryError(str(unresolvable))

    def _transport_error(self, error: httpx.HTTPError) -> DeliveryError:
        refusal = self._refusal(error)
        if refusal is not None:
            return refusal
        verification = _cause(error, ssl.SSLCertVerificationError)
        if verification is not None:
            # Retrying cannot fix a certificate: the CA bundle, the name or the server's chain must change.
            reason = verification.verify_message or str(verification)
            return PermanentDeliveryError(f"{self._origin}: TLS verification failed: {reason}")
        if isinstance(error, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return PermanentDeliveryError(f"{self._origin}: {type(error).__name__}: {error}")
        # Refused or reset connections, DNS failures, a server closing mid-answer: worth another try.
        return TransientDeliveryError(f"{self._origin}: {type(error).__name__}: {error}")

    # -- construction --------------------------------------------------------------------------------------------

    def _resolve(self, value: str | EnvRef, setting: str) -> str:
        if isinstance(value, EnvRef):
            try:
                return os.environ[value.env]
            except KeyError:
                raise StartupError(
                    f"sink {self.name!r}: {setting}: environment variable {value.env} is not set"
                ) from None
        return value

    def _signing_key(self, value: str | EnvRef, setting: str) -> bytes:
        try:
            return whsec_key(self._resolve(value, setting), env=value.env if isinstance(value, EnvRef) else None)
        except ValueError as error:
            raise StartupError(f"sink {self.name!r}: {setting}: {error}") from None

    def _header(self, header: str, value: str) -> str:
        if not _HEADER_NAME.match(header):
            raise StartupError(f"sink {self.name!r}: headers: {header!r} is not a valid HTTP header name")
        if header.lower() in _RESERVED_HEADERS:
            raise StartupError(f"sink {self.name!r}: headers.{header}: set by the sink itself, cannot be configured")
        if not value.isascii() or any(c in value for c in "\r\n\0"):
            raise StartupError(
                f"sink {self.name!r}: headers.{header}: the value must be ASCII without line breaks or NUL"
            )
        return value

    def _verify(self, config: WebhookSinkConfig) -> bool | ssl.SSLContext:
        if not config.verify_tls:
            return False
        if config.ca_bundle is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(config.ca_bundle))
        except (OSError, ssl.SSLError) as error:
            raise StartupError(f"sink {self.name!r}: ca_bundle {config.ca_bundle}: cannot load: {error}") from error


# -- Standard Webhooks signing (https://www.standardwebhooks.com/) -------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; StartupError if it is not one."""
    try:
        return whsec_key(secret)
    except ValueError as error:
        raise StartupError(f"webhook secret: {error}") from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    signed = message_id.encode("utf-8") + b"." + str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


# -- helpers -------------------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP-date (never negative); None when absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if _RETRY_AFTER_SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _content_type(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("text/") and "charset=" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


def _read_some(response: httpx.Response) -> bytes:
    """The first bytes of the body for an excerpt; the rest is read up to a limit so the connection can be reused."""
    kept = b""
    seen = 0
    try:
        for chunk in response.iter_bytes():
            if len(kept) < _EXCERPT_BYTES:
                kept += chunk[: _EXCERPT_BYTES - len(kept)]
            seen += len(chunk)
            if seen > _DRAIN_LIMIT_BYTES:
                break  # closing the response drops the connection instead
    except httpx.HTTPError:
        pass  # the status already decided the outcome
    return kept


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return f": {text!r}" if text else ""


def _ip_address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


class _ForbiddenAddressError(OSError):
    """The destination's name resolves to an address no webhook may reach."""


class _UnresolvableError(OSError):
    """The destination's name does not resolve (now)."""


class _VettingBackend(httpcore.SyncBackend):
    """Resolves the name once per new connection, refuses forbidden addresses, connects to a vetted address.

    Checking the name before the request and letting the client resolve it again to connect would leave a window
    in which a changed DNS answer (rebinding) sends the request to instance metadata. Here the address checked is
    the address connected to; TLS still verifies the certificate against the name.
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise _UnresolvableError(f"cannot resolve {host}: {error}") from error
        addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in resolved))
        for text in addresses:
            parsed = _ip_address(text)
            why = None if parsed is None else forbidden(parsed)
            if why is not None:
                raise _ForbiddenAddressError(f"{host} resolves to {parsed}, {why}")
        failure: Exception | None = None
        for address in addresses:  # like socket.create_connection: the next address if one refuses
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                failure = error
        raise failure or _UnresolvableError(f"cannot resolve {host}: no address")


def _vet_connections(client: httpx.Client) -> None:
    # httpx takes no network backend of its own; the connection pool (httpcore) of its default transport does.
    # Passing a whole transport instead would turn off the HTTP(S)_PROXY settings httpx reads from the environment.
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise StartupError("this httpx version cannot vet webhook connections; pin httpx<1 or set allow_link_local")
    pool._network_backend = _VettingBackend()  # noqa: SLF001


def _cause(error: BaseException, kind: type[E]) -> E | None:
    """The first exception of `kind` in the chain of causes (httpx wraps httpcore, which wraps the ssl error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


__all__ = ["USER_AGENT", "WebhookSink", "parse_retry_after", "sign", "signing_key"]
