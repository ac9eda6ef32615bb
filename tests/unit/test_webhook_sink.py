"""The webhook sink against real HTTP(S) servers on loopback: headers, signing, outcomes, TLS and the SSRF guard."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import consumer
from consumer.config import WebhookSinkConfig
from consumer.decode import decode_record
from consumer.errors import (
    NotSentError,
    PermanentDeliveryError,
    RetryAfterError,
    StartupError,
    ThrottledError,
    TransientDeliveryError,
)
from consumer.events import ChangeEvent, StreamContext
from consumer.sinks import webhook
from consumer.sinks.base import Message
from consumer.sinks.registry import build_sink
from consumer.sinks.webhook import WebhookSink, parse_retry_after

CONTEXT = StreamContext(
    stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945",
    region="us-east-1",
)
WHSEC = "whsec_" + base64.b64encode(b"a 24-byte test signing k").decode()
# A rotation: the secret being retired and its successor (32 random-looking bytes each, as generators make them).
OLD_WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW_WHSEC = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


# -- a real HTTP server on loopback --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a keep-alive handler waiting for the next request must not hold up teardown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.plan: list[Reply] = []
        self.release = threading.Event()  # wakes delayed replies at teardown
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    timeout = 10
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received = Received(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, self.client_address[1]
        )
        with self.server.lock:
            self.server.received.append(received)
            reply = self.server.plan.pop(0) if self.server.plan else Reply()
        if reply.delay:
            self.server.release.wait(reply.delay)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True  # the client gave up (timeout test)

    def do_PUT(self) -> None:
        self.do_POST()

    def do_PATCH(self) -> None:
        self.do_POST()

    def log_message(self, *_: object) -> None:
        return


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve(_Server())


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[_Server]:
    server = _Server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx honours proxy variables; loopback test traffic must go straight to the test server.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_sink() -> Iterator[Callable[..., WebhookSink]]:
    sinks: list[WebhookSink] = []

    def make(url: str, **settings: Any) -> WebhookSink:
        config = WebhookSinkConfig.model_validate({"type": "webhook", "url": url, **settings})
        sink = build_sink(config, CONTEXT)
        assert isinstance(sink, WebhookSink)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def _event(sequence: str, product: str = "p-1") -> ChangeEvent:
    record = {
        "eventID": f"id-{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000000,
            "Keys": {"productId": {"S": product}},
            "NewImage": {"productId": {"S": product}, "price": {"N": "25.99"}},
            "SequenceNumber": sequence,
            "SizeBytes": 40,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


def _message(sequence: str, body: str | None = None, content_type: str = "application/json") -> Message:
    event = _event(sequence)
    text = json.dumps({"id": event.event_id, "product": "p-1"}) if body is None else body
    return Message(event, "route", text, content_type)


def _expected_signature(key: bytes, received: Received) -> str:
    signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode() + received.body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@pytest.fixture
def forbid_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    attempts: list[tuple[Any, ...]] = []

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise ConnectionRefusedError(111, "test: connection refused")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts


def _resolve_to(monkeypatch: pytest.MonkeyPatch, host: str, *addresses: str) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# -- requests ------------------------------------------------------------------------------------------------------


def test_each_message_is_one_request_with_its_body_and_headers(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TOKEN", "Bearer s3cret")
    sink = make_sink(
        f"http://127.0.0.1:{server.port}/hooks/products?x=1",
        headers={"Authorization": {"env": "WEBHOOK_TOKEN"}, "X-Team": "catalog"},
    )
    batch = [_message("100"), _message("200"), _message("300")]

    assert sink.send(batch) == ()

    assert [r.body.decode() for r in server.received] == [m.body for m in batch]
    for received, message in zip(server.received, batch, strict=True):
        assert received.method == "POST"
        assert received.path == "/hooks/products?x=1"
        assert received.headers["content-type"] == "application/json"
        assert received.headers["idempotency-key"] == message.event.event_id
        assert received.headers["user-agent"] == f"dynamodb-streams-consumer/{consumer.__version__}"
        assert received.headers["authorization"] == "Bearer s3cret"
        assert received.headers["x-team"] == "catalog"
        assert "webhook-signature" not in received.headers
    # One client per sink: the three requests share a connection.
    assert len({r.client_port for r in server.received}) == 1


def test_text_bodies_are_utf8_with_a_charset(server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    sink = make_sink(f"http://127.0.0.1:{server.port}/", method="PUT")

    assert sink.send([_message("100", body="Größe: 42 €", content_type="text/plain")]) == ()

    (received,) = server.received
    assert received.method == "PUT"
    assert received.headers["content-type"] == "text/plain; charset=utf-8"
    assert received.body == "Größe: 42 €".encode()


def test_a_missing_environment_variable_stops_the_start(make_sink: Callable[..., WebhookSink]) -> None:
    with pytest.raises(StartupError, match="WEBHOOK_NOT_SET_ANYWHERE"):
        make_sink("http://127.0.0.1:9/", headers={"Authorization": {"env": "WEBHOOK_NOT_SET_ANYWHERE"}})
    with pytest.raises(StartupError, match="WEBHOOK_NOT_SET_ANYWHERE"):
        make_sink("http://127.0.0.1:9/", secret={"env": "WEBHOOK_NOT_SET_ANYWHERE"})


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Content-Type": "text/html"}, "set by the sink"),
        ({"X-Bad": "a\r\nInjected: 1"}, "line breaks"),
        ({"Bad Name": "x"}, "header name"),
    ],
)
def test_bad_headers_stop_the_start(
    make_sink: Callable[..., WebhookSink], headers: dict[str, str], problem: str
) -> None:
    with pytest.raises(StartupError, match=problem):
        make_sink("http://127.0.0.1:9/", headers=headers)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_not*base64", "the part after whsec_ is not base64"),
        ("whsec_url-safe_base64", "the part after whsec_ is not base64"),  # the reference library would drop - _
        ("whsec_", "the key after whsec_ is empty"),
        ("", "does not start with whsec_"),
        ("plain text secret", "does not start with whsec_"),
        # Base64 without the prefix too: the reference library would decode it, generic HMAC code would not.
        (WHSEC.removeprefix("whsec_"), "does not start with whsec_"),
    ],
)
def test_a_secret_from_the_environment_that_is_not_whsec_stops_the_start(
    make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch, secret: str, problem: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    for setting in ("secret", "previous_secret"):
        settings = {setting: {"env": "WEBHOOK_SECRET"}} | ({"secret": WHSEC} if setting == "previous_secret" else {})
        with pytest.raises(StartupError) as raised:
            make_sink("http://127.0.0.1:9/", **settings)
        message = str(raised.value)
        assert message.startswith(f"sink 'webhook': {setting}: ")
        assert problem in message
        assert "\n" not in message
        if secret.removeprefix("whsec_"):
            assert secret.removeprefix("whsec_") not in message  # never echoed


def test_an_unprefixed_secret_is_refused_with_the_command_that_keeps_its_key(
    make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "plain text secret")
    with pytest.raises(StartupError) as raised:
        make_sink("http://127.0.0.1:9/", secret={"env": "WEBHOOK_SECRET"})
    command = str(raised.value).split("to keep this text as the key: ", 1)[1]
    assert command == "export WEBHOOK_SECRET=whsec_$(printf %s \"$WEBHOOK_SECRET\" | base64 | tr -d '\\n')"
    # What the command makes of the old text is the old key, and the reference library reads it the same way.
    converted = "whsec_" + base64.b64encode(b"plain text secret").decode()
    assert webhook.signing_key(converted) == b"plain text secret"
    assert Webhook(converted).sign("id", datetime.now(UTC), b"x") == webhook.sign(
        b"plain text secret", "id", int(datetime.now(UTC).timestamp()), b"x"
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"secret": "hunter2"}, "secret: does not start with whsec_"),
        ({"secret": "whsec_***"}, "secret: the part after whsec_ is not base64"),
        ({"secret": WHSEC, "previous_secret": "old text"}, "previous_secret: does not start with whsec_"),
        ({"previous_secret": OLD_WHSEC}, "previous_secret: set without secret"),
        # An invalid secret is one problem, not also a "previous_secret without secret" beside it.
        ({"secret": "hunter2", "previous_secret": OLD_WHSEC}, "secret: does not start with whsec_"),
    ],
)
def test_secrets_written_in_the_config_are_checked_with_their_field(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        WebhookSinkConfig.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/", **settings})
    (error,) = raised.value.errors()
    field, message = problem.split(": ", 1)
    assert error["loc"] == (field,)
    assert message in error["msg"]


# -- Standard Webhooks signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        (WHSEC, b"a 24-byte test signing k"),
        ("whsec_YSAyNS1ieXRlIHRlc3Qgc2lnbmluZyBrZXk", b"a 25-byte test signing key"),  # padding left out
        (WHSEC + "\n", b"a 24-byte test signing k"),  # as read from a secrets file
    ],
    ids=["whsec", "unpadded", "newline"],
)
def test_requests_are_signed_the_standard_webhooks_way(
    server: _Server,
    make_sink: Callable[..., WebhookSink],
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
    key: bytes,
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    sink = make_sink(f"http://127.0.0.1:{server.port}/", secret={"env": "WEBHOOK_SECRET"})
    batch = [_message("100"), _message("200", body="ünïcode body", content_type="text/plain")]

    assert sink.send(batch) == ()

    for received, message in zip(server.received, batch, strict=True):
        assert received.headers["webhook-id"] == message.event.event_id
        assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 5
        assert received.headers["webhook-signature"] == _expected_signature(key, received)
        assert received.headers["webhook-signature"] != _expected_signature(b"another key", received)
        # The receiving side as Standard Webhooks users write it: the reference library, given the same secret.
        Webhook(secret.strip()).verify(received.body, received.headers, json_parse=False)


def _verifies(secret: str, received: Received) -> bool:
    try:
        Webhook(secret).verify(received.body, received.headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def test_during_a_rotation_a_receiver_knowing_either_secret_accepts(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", NEW_WHSEC)
    monkeypatch.setenv("WEBHOOK_SECRET_OLD", OLD_WHSEC)
    sink = make_sink(
        f"http://127.0.0.1:{server.port}/",
        secret={"env": "WEBHOOK_SECRET"},
        previous_secret={"env": "WEBHOOK_SECRET_OLD"},
    )

    assert sink.send([_message("100"), _message("200", body="ünïcode", content_type="text/plain")]) == ()

    new_key, old_key = (base64.b64decode(s.removeprefix("whsec_")) for s in (NEW_WHSEC, OLD_WHSEC))
    for received in server.received:
        # Two space-separated v1 signatures, the current secret's first.
        assert received.headers["webhook-signature"] == " ".join(
            (_expected_signature(new_key, received), _expected_signature(old_key, received))
        )
        assert _verifies(OLD_WHSEC, received)  # a receiver not yet told of the new secret
        assert _verifies(NEW_WHSEC, received)  # a receiver already moved on
        assert not _verifies(WHSEC, received)  # and one that knows neither refuses


def test_after_a_rotation_only_the_new_secret_verifies(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", NEW_WHSEC)
    sink = make_sink(f"http://127.0.0.1:{server.port}/", secret={"env": "WEBHOOK_SECRET"})

    assert sink.send([_message("100")]) == ()

    (received,) = server.received
    assert " " not in received.headers["webhook-signature"]
    assert _verifies(NEW_WHSEC, received)
    assert not _verifies(OLD_WHSEC, received)


def test_a_tampered_body_or_stale_timestamp_is_refused_by_the_reference_library(
    server: _Server, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(f"http://127.0.0.1:{server.port}/", secret=WHSEC)
    assert sink.send([_message("100")]) == ()
    (received,) = server.received

    assert _verifies(WHSEC, received)
    tampered = Received(received.method, received.path, received.headers, received.body + b" ", received.client_port)
    assert not _verifies(WHSEC, tampered)
    stale = dict(received.headers, **{"webhook-timestamp": str(int(received.headers["webhook-timestamp"]) - 600)})
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(WHSEC).verify(received.body, stale, json_parse=False)


# -- outcomes ------------------------------------------------------------------------------------------------------


def test_a_slow_endpoint_is_a_transient_failure_within_the_timeout(
    server: _Server, make_sink: Callable[..., WebhookSink]
) -> None:
    server.plan.append(Reply(delay=5))
    sink = make_sink(f"http://127.0.0.1:{server.port}/", timeout_seconds=0.3)
    message = _message("100")

    started = time.monotonic()
    (failure,) = sink.send([message])
    elapsed = time.monotonic() - started

    assert failure.message is message
    assert isinstance(failure.error, TransientDeliveryError)
    assert "0.3s" in str(failure.error)
    assert 0.25 < elapsed < 1.5


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient_with_retry_after(
    server: _Server, make_sink: Callable[..., WebhookSink], status: int
) -> None:
    server.plan.append(Reply(status=status, headers={"Retry-After": "7"}, body=b"slow down"))
    sink = make_sink(f"http://127.0.0.1:{server.port}/")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, RetryAfterError)
    assert isinstance(failure.error, TransientDeliveryError)
    assert failure.error.status == status
    assert failure.error.retry_after == 7.0
    assert f"HTTP {status}" in str(failure.error)


def test_retry_after_as_an_http_date(server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.plan.append(Reply(status=429, headers={"Retry-After": later}))
    server.plan.append(Reply(status=503))
    sink = make_sink(f"http://127.0.0.1:{server.port}/")

    (throttled,) = sink.send([_message("100")])
    (unavailable,) = sink.send([_message("100")])

    assert isinstance(throttled.error, RetryAfterError)
    assert throttled.error.retry_after is not None
    assert 110 < throttled.error.retry_after <= 121
    assert isinstance(unavailable.error, RetryAfterError)
    assert unavailable.error.retry_after is None
    # Only the 429 counts as throttling (dynamodb_consumer_throttles_total).
    assert isinstance(throttled.error, ThrottledError)
    assert not isinstance(unavailable.error, ThrottledError)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0  # in the past: now
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_client_errors_are_permanent_with_the_status_and_an_excerpt(
    server: _Server, make_sink: Callable[..., WebhookSink], status: int
) -> None:
    server.plan.append(Reply(status=status, body=b'{"error": "price must be positive"}' + b"x" * 5000))
    sink = make_sink(f"http://127.0.0.1:{server.port}/secret-token-in-path")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, PermanentDeliveryError)
    text = str(failure.error)
    assert f"HTTP {status}" in text
    assert "price must be positive" in text
    assert len(text) < 400
    assert "secret-token-in-path" not in text  # only the origin is named


def test_redirects_are_not_followed(server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    server.plan.append(Reply(status=302, headers={"Location": f"http://127.0.0.1:{server.port}/elsewhere"}))
    sink = make_sink(f"http://127.0.0.1:{server.port}/")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, PermanentDeliveryError)
    assert "HTTP 302" in str(failure.error)
    assert len(server.received) == 1


def test_a_failure_mid_batch_leaves_the_rest_unsent(server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    server.plan += [Reply(), Reply(status=500), Reply(), Reply()]
    sink = make_sink(f"http://127.0.0.1:{server.port}/")
    batch = [_message("100"), _message("200"), _message("300"), _message("400")]

    failures = sink.send(batch)

    assert [f.message for f in failures] == batch[1:]
    assert isinstance(failures[0].error, RetryAfterError)
    assert all(type(f.error) is NotSentError for f in failures[1:])  # transient, and costs them no attempt
    assert all("not sent" in str(f.error) for f in failures[1:])
    assert [r.headers["idempotency-key"] for r in server.received] == ["id-100", "id-200"]

    # The pipeline resends exactly the failed ones; they arrive in order.
    assert sink.send([f.message for f in failures]) == ()
    assert [r.headers["idempotency-key"] for r in server.received] == ["id-100", "id-200", "id-200", "id-300", "id-400"]


def test_a_refused_connection_is_transient(make_sink: Callable[..., WebhookSink]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = make_sink(f"http://127.0.0.1:{port}/")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, TransientDeliveryError)
    assert "ConnectError" in str(failure.error)


def test_an_empty_batch_sends_nothing(server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    assert make_sink(f"http://127.0.0.1:{server.port}/").send([]) == ()
    assert server.received == []


def test_close_closes_the_client(server: _Server) -> None:
    config = WebhookSinkConfig(type="webhook", url=f"http://127.0.0.1:{server.port}/")
    sink = WebhookSink(config, CONTEXT)
    sink.close()
    assert sink._client.is_closed
    sink.close()


# -- TLS -----------------------------------------------------------------------------------------------------------


def test_an_untrusted_certificate_is_a_permanent_failure(
    tls_server: _Server, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(f"https://127.0.0.1:{tls_server.port}/")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, PermanentDeliveryError)
    assert "TLS verification failed" in str(failure.error)
    assert tls_server.received == []


def test_a_ca_bundle_makes_the_certificate_trusted(
    tls_server: _Server, make_sink: Callable[..., WebhookSink], ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    sink = make_sink(f"https://127.0.0.1:{tls_server.port}/", ca_bundle=str(bundle))

    assert sink.send([_message("100"), _message("200")]) == ()
    assert [r.headers["idempotency-key"] for r in tls_server.received] == ["id-100", "id-200"]


def test_verify_tls_false_skips_verification(tls_server: _Server, make_sink: Callable[..., WebhookSink]) -> None:
    sink = make_sink(f"https://127.0.0.1:{tls_server.port}/", verify_tls=False)

    assert sink.send([_message("100")]) == ()


def test_an_unreadable_ca_bundle_stops_the_start(make_sink: Callable[..., WebhookSink], tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="ca_bundle"):
        make_sink("https://127.0.0.1:9/", ca_bundle=str(tmp_path / "missing.pem"))


# -- SSRF guard ----------------------------------------------------------------------------------------------------


def test_the_instance_metadata_address_is_refused_without_connecting(
    forbid_connections: list[tuple[Any, ...]],
) -> None:
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    with pytest.raises(ValidationError, match="allow_link_local"):  # the configuration refuses it first
        WebhookSinkConfig.model_validate({"type": "webhook", "url": url})
    # The guard does not rely on that check: a sink built from a configuration that skipped it refuses all the same.
    sink = build_sink(WebhookSinkConfig.model_construct(type="webhook", url=url), CONTEXT)

    try:
        (failure,) = sink.send([_message("100")])
    finally:
        sink.close()

    assert isinstance(failure.error, PermanentDeliveryError)
    assert "allow_link_local" in str(failure.error)
    assert "169.254.169.254" in str(failure.error)
    assert forbid_connections == []


@pytest.mark.parametrize(
    "addresses",
    [("169.254.170.2",), ("fe80::1",), ("fd00:ec2::254",), ("::ffff:169.254.169.254",), ("10.0.0.8", "169.254.1.1")],
)
def test_a_name_resolving_to_a_link_local_address_is_refused(
    make_sink: Callable[..., WebhookSink],
    monkeypatch: pytest.MonkeyPatch,
    forbid_connections: list[tuple[Any, ...]],
    addresses: tuple[str, ...],
) -> None:
    _resolve_to(monkeypatch, "hooks.example.test", *addresses)
    sink = make_sink("https://hooks.example.test/in")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, PermanentDeliveryError)
    assert "allow_link_local" in str(failure.error)
    assert forbid_connections == []


def test_the_address_checked_is_the_address_connected_to(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the first answer is harmless, every later one points at instance metadata. A guard that
    # checks the name and lets the client resolve it again to connect would send the request to the second answer.
    answers = iter([["127.0.0.1"]])
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != "hooks.example.test":
            return real(name, port, *args, **kwargs)
        lookups.append(name)
        addresses = next(answers, ["169.254.169.254"])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    sink = make_sink(f"http://hooks.example.test:{server.port}/")

    assert sink.send([_message("100")]) == ()
    assert lookups == ["hooks.example.test"]  # one lookup: the vetted address is the one connected to
    assert len(server.received) == 1


def test_a_new_connection_is_vetted_again(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = make_sink(f"http://hooks.example.test:{server.port}/")
    _resolve_to(monkeypatch, "hooks.example.test", "127.0.0.1")
    assert sink.send([_message("100")]) == ()
    sink.close()  # the kept-alive connection is gone: the next message needs a new one

    _resolve_to(monkeypatch, "hooks.example.test", "169.254.169.254")
    replacement = make_sink(f"http://hooks.example.test:{server.port}/")
    (failure,) = replacement.send([_message("200")])

    assert isinstance(failure.error, PermanentDeliveryError)
    assert len(server.received) == 1


def test_allow_link_local_lets_the_request_go(
    make_sink: Callable[..., WebhookSink],
    monkeypatch: pytest.MonkeyPatch,
    forbid_connections: list[tuple[Any, ...]],
) -> None:
    _resolve_to(monkeypatch, "metadata.example.test", "169.254.169.254")
    sink = make_sink("http://metadata.example.test/latest", allow_link_local=True, timeout_seconds=0.5)

    (failure,) = sink.send([_message("100")])

    # It tried to connect (the test's socket refused), rather than refusing on its own.
    assert isinstance(failure.error, TransientDeliveryError)
    assert "allow_link_local" not in str(failure.error)
    assert forbid_connections == [("metadata.example.test", 80)]


def test_loopback_and_private_addresses_are_allowed(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolve_to(monkeypatch, "hooks.example.test", "127.0.0.1", "10.1.2.3", "fd12:3456::1")
    sink = make_sink(f"http://hooks.example.test:{server.port}/")

    assert sink.send([_message("100")]) == ()


def test_an_unresolvable_host_is_transient(
    make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch, forbid_connections: list[tuple[Any, ...]]
) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    sink = make_sink("https://nowhere.example.test/")

    (failure,) = sink.send([_message("100")])

    assert isinstance(failure.error, TransientDeliveryError)
    assert "cannot resolve nowhere.example.test" in str(failure.error)
    assert forbid_connections == []


def test_registered_as_webhook() -> None:
    assert webhook.WebhookSink is WebhookSink
    config = WebhookSinkConfig(type="webhook", name="hooks", url="http://127.0.0.1:9/")
    sink = build_sink(config, CONTEXT)
    try:
        assert isinstance(sink, WebhookSink)
        assert sink.name == "hooks"
    finally:
        sink.close()


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The example from the Standard Webhooks specification and its reference libraries.
    from consumer.sinks.webhook import sign, signing_key  # noqa: PLC0415

    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_an_http_proxy_from_the_environment_is_still_used(
    server: _Server, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The vetting sits in the default transport only: httpx's proxy settings from the environment keep working.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    sink = make_sink("http://hooks.example.test/in")  # not resolvable: only the proxy can take it

    assert sink.send([_message("100")]) == ()
    assert len(server.received) == 1
