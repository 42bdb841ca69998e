"""The webhook step's SSRF check holds at connect time: the host is resolved once, every address is
checked, and the socket goes to exactly a checked address (DNS rebinding cannot reach loopback),
while the Host header, TLS SNI and the certificate check keep the URL's name."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from journeys.steps import webhook

PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class Receiver:
    """A local HTTP(S) server on 127.0.0.1 that records what reaches it."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests: list[dict[str, str]] = []
        self.server_names: list[str | None] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "host": self.headers.get("Host", "")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client refusing our test certificate is the expected outcome of one test

        self.server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def resolver(monkeypatch):
    """``socket.getaddrinfo`` answering ``answers[0]`` to the first lookup, ``answers[1]`` to the
    second and so on (the last answer repeats): a hostile DNS server with TTL 0."""
    state = {"answers": [], "lookups": []}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        state["lookups"].append(host)
        answers = state["answers"]
        addresses = answers[min(len(state["lookups"]), len(answers)) - 1]
        if isinstance(addresses, Exception):
            raise addresses
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


@pytest.fixture
def connects(monkeypatch):
    """Every address a socket connects to. Only 127.0.0.1 (the local receiver) is really connected;
    any other address is refused here, so no test reaches the network."""
    seen: list[tuple] = []
    real = socket.socket.connect

    def connect(sock, address):
        seen.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(111, "Connection refused (test)")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def _post(url: str) -> webhook.Answer:
    return webhook.post(url, body={"a": 1}, headers={}, key="run:hook", timeout=2)


def test_a_rebinding_resolver_cannot_turn_the_call_to_loopback(resolver, connects, receiver):
    # The check sees a public address; a second lookup (the one requests used to make) says loopback.
    resolver["answers"] = [[PUBLIC], ["127.0.0.1"]]
    answer = _post(f"http://rebind.example.com:{receiver.port}/hook")
    assert connects == [(PUBLIC, receiver.port)]  # the checked address, and only it
    assert receiver.requests == []
    assert resolver["lookups"] == ["rebind.example.com"]  # one lookup per attempt
    assert not answer.ok and answer.retryable  # the public address refused: a network error


def test_several_addresses_one_private_refuses_the_host_all_public_are_tried_in_order(
    resolver, connects, receiver
):
    resolver["answers"] = [[PUBLIC, "10.0.0.5"]]
    answer = _post(f"http://mixed.example.com:{receiver.port}/hook")
    assert not answer.ok and not answer.retryable and "10.0.0.5 is not a public address" in answer.error
    assert connects == []

    # Both public addresses refuse: the connection falls back to the second checked address, never
    # to what a later lookup says.
    resolver["answers"] = [[PUBLIC, PUBLIC_V6], ["127.0.0.1"]]
    resolver["lookups"].clear()
    answer = _post(f"http://two.example.com:{receiver.port}/hook")
    assert [a[0] for a in connects] == [PUBLIC, PUBLIC_V6]
    assert receiver.requests == [] and resolver["lookups"] == ["two.example.com"]
    assert not answer.ok and answer.retryable


@pytest.fixture
def loopback_counts_as_public(monkeypatch):
    """The receivers here live on 127.0.0.1: let the check pass it, so the test sees the connection
    that follows (the check itself is tested above and in test_webhook_step.py)."""
    real = webhook._unsafe_address
    monkeypatch.setattr(webhook, "_unsafe_address", lambda text: "" if text == "127.0.0.1" else real(text))


def test_the_pinned_connection_keeps_the_host_name_in_the_host_header(
    resolver, connects, receiver, loopback_counts_as_public
):
    resolver["answers"] = [["127.0.0.1"], socket.gaierror(socket.EAI_NONAME, "a second lookup")]
    answer = _post(f"http://hook.example.com:{receiver.port}/hook?x=1")
    assert answer.ok, answer.error
    assert receiver.requests == [{"path": "/hook?x=1", "host": f"hook.example.com:{receiver.port}"}]
    assert resolver["lookups"] == ["hook.example.com"]


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for ``name``: (certificate path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def test_https_sends_the_host_name_as_sni_and_verifies_the_certificate_against_it(
    tmp_path, monkeypatch, resolver, connects, loopback_counts_as_public
):
    cert, key = _certificate(tmp_path, "hook.example.com")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = Receiver(tls)
    real_session = webhook._session

    def trusting_the_test_certificate(*args):
        session = real_session(*args)
        session.verify = cert  # verification stays on, against this certificate instead of the system's
        return session

    monkeypatch.setattr(webhook, "_session", trusting_the_test_certificate)
    try:
        resolver["answers"] = [["127.0.0.1"], socket.gaierror(socket.EAI_NONAME, "a second lookup")]
        answer = _post(f"https://hook.example.com:{server.port}/hook")
        assert answer.ok, answer.error
        assert server.server_names == ["hook.example.com"]
        assert server.requests == [{"path": "/hook", "host": f"hook.example.com:{server.port}"}]

        # The same address under another name: the certificate does not match that name, so the
        # call fails (the check is against the URL's name, not skipped for a pinned address).
        resolver["answers"] = [["127.0.0.1"], socket.gaierror(socket.EAI_NONAME, "a second lookup")]
        resolver["lookups"].clear()
        answer = _post(f"https://other.example.com:{server.port}/hook")
        assert not answer.ok and answer.error.startswith("SSLError")
        assert server.server_names[-1] == "other.example.com" and len(server.requests) == 1
        assert resolver["lookups"] == ["other.example.com"]
    finally:
        server.close()
