"""What counts as an answer is the target's: its status, and how (or whether) an answer names its
backend; asked for real over HTTP and HTTPS (with the server name) on loopback."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.measure.client import Target, request_vip
from chaoslab.measure.load import Endpoint, request_fresh

TOPOLOGY = Topology.load()


class Backend(http.server.BaseHTTPRequestHandler):
    """Answers as the test's server is told to: a status, a page, a header and a cookie."""

    def do_GET(self) -> None:
        status, page, headers = self.server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(page.encode())
        self.server.hosts.append(self.headers.get("Host"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Backend)
    httpd.answer, httpd.hosts = (200, "", {}), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url(server: http.server.HTTPServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}/"


def test_each_identity_names_the_backend_its_own_way(server: http.server.HTTPServer):
    backends = (("web1", "srv-a"), ("web2", "srv-b"))
    server.answer = (200, "<p>srv-b</p>", {"X-Served-By": "srv-a", "Set-Cookie": "SERVERID=srv-b; path=/"})
    assert request_vip(Target(url(server), backends, "body"), 1).backend == "web2"
    assert request_vip(Target(url(server), backends, "header", "X-Served-By"), 1).backend == "web1"
    assert request_vip(Target(url(server), backends, "cookie", "SERVERID"), 1).backend == "web2"
    for identity, field, backend in (("body", None, "web2"), ("header", "X-Served-By", "web1"), ("cookie", "SERVERID", "web2")):
        target = Target(url(server), backends, identity, field)  # the sampler's and the load's http.client
        assert request_fresh(Endpoint(target, 1), target).backend == backend
    anonymous = request_vip(Target(url(server), (), "none"), 1)
    assert anonymous.ok and anonymous.backend is None


def test_an_answer_that_is_not_the_expected_one_is_a_failure(server: http.server.HTTPServer):
    backends = (("web1", "srv-a"),)
    server.answer = (200, "a page that names nobody", {})
    unknown = request_vip(Target(url(server), backends, "body"), 1)
    assert not unknown.ok and unknown.error == "unidentified"
    server.answer = (503, "srv-a", {})
    assert request_vip(Target(url(server), backends, "body"), 1).error == "http"
    server.answer = (204, "", {})
    assert request_vip(Target(url(server), (), "none", expect_status=204), 1).ok


def test_https_sends_the_server_name_and_the_host_header(server: http.server.HTTPServer, tmp_path: Path):
    key, certificate = tmp_path / "key.pem", tmp_path / "certificate.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=shop.example.test", "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.answer = (200, "hello", {})
    target = Target(url(server, "https"), (), "none", host="shop.example.test", verify_tls=False)
    assert request_vip(target, 2).ok
    assert request_fresh(Endpoint(target, 2), target).ok  # the sampler's request, through http.client
    assert names == ["shop.example.test"] * 2 and server.hosts == ["shop.example.test"] * 2


def test_the_lab_target_is_its_pages_and_a_user_target_comes_from_the_topology():
    lab = TOPOLOGY.target()
    assert lab.url == "http://192.168.1.10:80/" and lab.identity == "body"
    assert lab.backends == (("httpd-1", "httpd-1.lab.example.com"), ("httpd-2", "httpd-2.lab.example.com"))
    data = {**TOPOLOGY.data, "target": {"scheme": "https", "path": "/ok.html", "host": "shop.example.com",
                                        "identity": {"kind": "cookie", "name": "SERVERID",
                                                     "markers": {"httpd-1": "s1"}}}}
    user = Topology(data).target()
    assert user.url == "https://192.168.1.10:80/ok.html" and (user.identity, user.field) == ("cookie", "SERVERID")
    assert user.backends == (("httpd-1", "s1"), ("httpd-2", "httpd-2")) and user.host == "shop.example.com"
    assert Target.from_json(user.to_json()) == user


@pytest.mark.parametrize("section, message", [
    ({"scheme": "gopher"}, "target.scheme 'gopher' is not http or https"),
    ({"path": "ok.html"}, "target.path 'ok.html' must start with /"),
    ({"expect_status": 99}, "target.expect_status 99 is not an HTTP status"),
    ({"identity": {"kind": "smell"}}, "target.identity.kind 'smell' is unknown; use body, header, cookie, none"),
    ({"identity": {"kind": "header"}}, "target.identity of kind header needs the header's name"),
    ({"identity": {"markers": {"db-1": "x"}}}, "target.identity.markers names no web server of the topology: db-1"),
])
def test_a_wrong_target_says_what_is_wrong(section: dict, message: str):
    with pytest.raises(ChaoslabError, match=message):
        Topology({**TOPOLOGY.data, "target": section})
