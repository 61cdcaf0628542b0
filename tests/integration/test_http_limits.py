"""The HTTP server's own limits (gateway.ingress.http.protocol), against a real gateway
process over raw sockets: oversized and too many headers, long request lines,
bodies over the limit (chunked or not), slowloris heads and bodies, idle
keep-alive, connections per worker, and the API key checked before any body
is read."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.harness import GatewayProcess
from tests.integration.conftest import API_KEY

LIMITS = {
    "SMSGW_HTTP__MAX_BODY_BYTES": "65536",
    "SMSGW_HTTP__MAX_HEADER_BYTES": "8192",
    "SMSGW_HTTP__MAX_HEADERS": "50",
    "SMSGW_HTTP__MAX_REQUEST_LINE": "1024",
    "SMSGW_HTTP__HEADER_TIMEOUT": "1.5",
    "SMSGW_HTTP__BODY_TIMEOUT": "1.5",
    "SMSGW_HTTP__KEEPALIVE_TIMEOUT": "1.5",
    "SMSGW_HTTP__MAX_CONNECTIONS": "12",
}
ENDPOINTS = ["/v1/messages", "/v1/messages/batch", "/v1/optouts"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(Path(tmp_path_factory.mktemp("limits")), env=LIMITS)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def connect(gw: GatewayProcess, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.http_port), timeout=timeout)


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (socket timeout bounds the wait)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def problem(raw: bytes, status: int, code: str) -> None:
    got, headers, body = response(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["code"] == code


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send, tolerating the server closing early (it refuses mid-request)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def head(path: str = "/v1/messages", method: str = "POST", extra: str = "",
         key: str = API_KEY) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            f"{extra}").encode()


def test_an_endless_header_is_refused_and_the_connection_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, head() + b"X-Big: " + b"a" * 32768)  # never finished
        problem(read_until_closed(sock), 431, "headers_too_large")


def test_a_header_over_the_size_limit_is_refused(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, head(method="GET", path="/v1/optouts")
                 + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n")
        problem(read_until_closed(sock), 431, "headers_too_large")


def test_too_many_headers_are_refused(gw: GatewayProcess) -> None:
    lines = "".join(f"X-H{i}: v\r\n" for i in range(60))
    with connect(gw) as sock:
        send_all(sock, head(method="GET", path="/v1/optouts", extra=lines) + b"\r\n")
        problem(read_until_closed(sock), 431, "headers_too_large")


def test_a_long_request_line_is_refused(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, head(method="GET", path="/v1/optouts?x=" + "a" * 2000) + b"\r\n")
        problem(read_until_closed(sock), 414, "uri_too_long")


def test_headers_within_the_limits_are_served(gw: GatewayProcess) -> None:
    lines = "".join(f"X-H{i}: {'v' * 50}\r\n" for i in range(40))
    with connect(gw) as sock:
        send_all(sock, head(method="GET", path="/v1/optouts", extra=lines + "Connection: close\r\n")
                 + b"\r\n")
        status, _, body = response(read_until_closed(sock))
    assert status == 200, body
    assert "numbers" in json.loads(body)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_content_length_over_the_limit_is_413(gw: GatewayProcess, path: str) -> None:
    with connect(gw) as sock:
        send_all(sock, head(path, extra="Content-Type: application/json\r\n"
                                        "Content-Length: 70000\r\n\r\n"))
        problem(read_until_closed(sock), 413, "payload_too_large")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_chunked_body_over_the_limit_is_413(gw: GatewayProcess, path: str) -> None:
    chunk = b"a" * 16384
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    with connect(gw) as sock:
        send_all(sock, head(path, extra="Content-Type: application/json\r\n"
                                        "Transfer-Encoding: chunked\r\n\r\n"))
        for _ in range(5):  # 80 KiB > 64 KiB
            send_all(sock, framed)
        send_all(sock, b"0\r\n\r\n")
        problem(read_until_closed(sock), 413, "payload_too_large")


def test_a_slowloris_head_is_closed_after_the_header_timeout(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n")
        started = time.monotonic()
        for i in range(3):  # trickling more head does not reset the timer
            time.sleep(0.4)
            send_all(sock, f"X-Slow-{i}: 1\r\n".encode())
        raw = read_until_closed(sock)
        waited = time.monotonic() - started
    problem(raw, 408, "request_timeout")
    assert waited < 9  # bounded by the socket timeout (10 s), not a speed claim


def test_a_silent_connection_is_closed_after_the_header_timeout(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        problem(read_until_closed(sock), 408, "request_timeout")


def test_a_slow_body_is_closed_after_the_body_timeout(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, head(extra="Content-Type: application/json\r\n"
                                  "Content-Length: 200\r\n\r\n") + b'{"to": "+86')
        for _ in range(3):
            time.sleep(0.4)
            send_all(sock, b"1")
        problem(read_until_closed(sock), 408, "request_timeout")


def test_an_idle_keep_alive_connection_is_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, head(method="GET", path="/v1/optouts") + b"\r\n")
        raw = read_until_closed(sock)
    status, headers, _ = response(raw)
    assert status == 200
    assert headers.get("connection") != "close"  # closed by the idle timeout, not the reply


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_wrong_key_is_refused_before_the_body_is_read(gw: GatewayProcess, path: str) -> None:
    with connect(gw) as sock:
        # A body is announced but never sent: the answer cannot have waited for it.
        send_all(sock, head(path, key="wrong", extra="Content-Type: application/json\r\n"
                                                     "Content-Length: 60000\r\n\r\n"))
        raw = read_until_closed(sock)
    problem(raw, 401, "unauthorized")


def test_a_missing_key_is_refused_before_a_malformed_body_is_parsed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{{{{{")
        problem(read_until_closed(sock), 401, "unauthorized")


def test_connections_over_the_limit_are_refused(gw: GatewayProcess) -> None:
    held = [connect(gw) for _ in range(12)]
    try:
        time.sleep(0.2)
        with connect(gw) as extra:
            problem(read_until_closed(extra), 503, "too_many_connections")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with connect(gw) as sock:  # room again once they are gone
        send_all(sock, head(method="GET", path="/v1/optouts", extra="Connection: close\r\n")
                 + b"\r\n")
        assert response(read_until_closed(sock))[0] == 200


# --- credential guessing ------------------------------------------------------------


def client_from(gw: GatewayProcess, source: str, key: str) -> httpx.Client:
    """An HTTP client whose connections leave from `source` (any 127/8 address)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gw.base_url, transport=transport, timeout=10,
                        headers={"Authorization": f"Bearer {key}"})


def test_guessing_keys_gets_the_source_429_and_leaves_others_alone(tmp_path: Path) -> None:
    env = {"SMSGW_HTTP__AUTH_FAILURES": "5", "SMSGW_HTTP__AUTH_FAILURE_WINDOW": "60"}
    guess = "guess-7f3a9c-not-a-key"
    with GatewayProcess(tmp_path / "gw", env=env, workers=2) as gw:
        with client_from(gw, "127.0.0.2", guess) as attacker, \
                client_from(gw, "127.0.0.2", API_KEY) as attacker_right, \
                client_from(gw, "127.0.0.1", API_KEY) as other, \
                client_from(gw, "127.0.0.1", "wrong") as other_wrong:
            statuses = [attacker.get("/v1/optouts").status_code for _ in range(5)]
            assert statuses == [401] * 5
            limited = [attacker.post("/v1/messages", json={}) for _ in range(4)]
            for r in limited:
                assert r.status_code == 429, r.text
                assert r.json()["code"] == "rate_limited"
                assert r.headers["content-type"] == "application/problem+json"
                assert 1 <= int(r.headers["Retry-After"]) <= 60
            # the right key from the same source is refused too (or guessing could
            # tell a hit from a miss); on both workers, hence several tries
            assert all(attacker_right.get("/v1/optouts").status_code == 429 for _ in range(6))
            # another source is unaffected, right key or wrong
            assert other.get("/v1/optouts").status_code == 200
            r = other.post("/v1/messages", json={"to": "+8613800138000", "from": "SHOP",
                                                  "text": "hi"})
            assert r.status_code == 202, r.text
            assert other_wrong.get("/v1/optouts").status_code == 401
            metrics_text = other.get("/metrics").text
        log = gw.log_path.read_text()
    assert guess not in log
    failures = [line for line in log.splitlines() if "auth_failed" in line]
    assert any("127.0.0.2" in line for line in failures)
    assert any(hashlib.sha256(guess.encode()).hexdigest()[:12] in line for line in failures)
    assert 'smsgw_auth_failures_total{outcome="rate_limited"}' in metrics_text
    assert 'smsgw_auth_failures_total{outcome="unauthorized"}' in metrics_text


# --- POST /v1/messages answered by the protocol itself (gateway.ingress.http.protocol) ----------

MESSAGE = b'{"to": "+8613800138000", "from": "SHOP", "text": "hello"}'


def post_message(path: str = "/v1/messages", version: str = "1.1", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: gw\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(MESSAGE)}\r\n{extra}\r\n"
            ).encode() + MESSAGE


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses with a Content-Length each, in the order they came."""
    data, out = b"", []
    while len(out) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            status, headers, _ = response(data[:head_end + 4])
            end = head_end + 4 + int(headers.get("content-length", "0"))
            if len(data) >= end:
                out.append((status, headers, data[head_end + 4:end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(out)} of {count} responses"
        data += chunk
    return out


def test_pipelined_requests_are_answered_in_order(gw: GatewayProcess) -> None:
    """Two submissions and a GET in one write: the second submission goes the
    ASGI way behind the first, and the answers leave in request order."""
    with connect(gw) as sock:
        send_all(sock, post_message() + post_message()
                 + head(method="GET", path="/v1/optouts") + b"\r\n")
        answers = read_responses(sock, 3)
    assert [status for status, _, _ in answers] == [202, 202, 200]
    first, second = (json.loads(body)["id"] for _, _, body in answers[:2])
    assert first != second
    assert "numbers" in json.loads(answers[2][2])


def test_the_direct_answer_matches_the_asgi_one(gw: GatewayProcess) -> None:
    """The same submission answered by the protocol and (with a query string,
    which only the ASGI route takes) by uvicorn: same status and header names."""
    with connect(gw) as sock:
        send_all(sock, post_message())
        direct = read_responses(sock, 1)[0]
        send_all(sock, post_message("/v1/messages?via=asgi"))
        asgi = read_responses(sock, 1)[0]
    assert direct[0] == asgi[0] == 202
    assert sorted(direct[1]) == sorted(asgi[1])
    assert set(json.loads(direct[2])) == set(json.loads(asgi[2])) == {
        "id", "status", "parts", "encoding"}


def test_expect_100_continue_is_answered_before_the_body(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        request = post_message(extra="Expect: 100-continue\r\n")
        send_all(sock, request[:-len(MESSAGE)])
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        send_all(sock, MESSAGE)
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        status, _, body = response(rest or read_until_closed(sock))
    assert status == 202, body


def test_an_http_1_0_submission_is_answered_and_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, post_message(version="1.0"))
        status, headers, body = response(read_until_closed(sock))
    assert status == 202, body
    assert headers["connection"] == "close"
    assert json.loads(body)["status"] == "accepted"


def test_a_client_gone_before_its_body_leaves_the_connection_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        send_all(sock, post_message()[:-10])
    # the worker is still answering others
    with connect(gw) as sock:
        send_all(sock, post_message(extra="Connection: close\r\n"))
        status, _, _ = response(read_until_closed(sock))
    assert status == 202


def test_a_source_blocked_on_one_host_is_blocked_on_another(tmp_path: Path) -> None:
    """Two gateways (two hosts) on one Redis: guessing against the first gets
    the source refused by the second too, right key and all, while another
    source still gets in there."""
    from gateway.run.embedded_redis import EmbeddedRedis

    redis_server = EmbeddedRedis(tmp_path / "redis")
    url = redis_server.start()
    env = {"SMSGW_HTTP__AUTH_FAILURES": "3", "SMSGW_HTTP__AUTH_FAILURE_WINDOW": "60",
           "SMSGW_REDIS__URL": url}
    try:
        with GatewayProcess(tmp_path / "a", env=env) as a, \
                GatewayProcess(tmp_path / "b", env=env) as b:
            with client_from(b, "127.0.0.3", API_KEY) as right_on_b:
                assert right_on_b.get("/v1/optouts").status_code == 200  # not blocked yet
            with client_from(a, "127.0.0.3", "guess-not-a-key") as attacker:
                statuses = [attacker.get("/v1/optouts").status_code for _ in range(4)]
            assert statuses == [401, 401, 401, 429]
            # at once: b does not wait for its twice-a-second copy of the blocks
            with client_from(b, "127.0.0.3", API_KEY) as right_on_b:
                r = right_on_b.get("/v1/optouts")
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            with client_from(b, "127.0.0.1", API_KEY) as other:
                assert other.get("/v1/optouts").status_code == 200
    finally:
        redis_server.stop()
