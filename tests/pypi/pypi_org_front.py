"""pypi.org's front door, for the tests of clients whose PyPI URL is fixed (pip-audit asks
https://pypi.org/pypi/<project>/<version>/json and nothing else).

An HTTPS proxy on loopback: a client sends CONNECT (HTTPS_PROXY), this answers TLS for the
tunnel with the given certificate (the client trusts its CA through REQUESTS_CA_BUNDLE), then
passes each request on to a wharf repository as a reverse proxy in front of wharf would: the
path under the repository's URL, every header but the hop-by-hop ones (so the client's own
credentials, from its netrc, reach wharf). Nothing here answers for wharf.

Usage: pypi_org_front.py PORT CERT KEY REPOSITORY_URL; serves until killed.
"""

import http.client
import socket
import ssl
import sys
import threading
import urllib.parse

HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


def read_head(stream):
    """The request line and headers of one request, or None at the end of the stream."""
    line = stream.readline(65536)
    if not line:
        return None
    headers = []
    while True:
        h = stream.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").strip(), headers


def serve_tunnel(tls, upstream):
    stream = tls.makefile("rb")
    while True:
        head = read_head(stream)
        if head is None:
            return
        (request_line, headers) = head
        method, target, _ = request_line.split(" ", 2)
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = stream.read(length) if length else None
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        conn.request(method, upstream.path.rstrip("/") + target, body, {k: v for k, v in headers if k.lower() not in HOP_BY_HOP})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        lines = [f"HTTP/1.1 {r.status} {r.reason}"]
        lines += [f"{k}: {v}" for k, v in r.getheaders() if k.lower() not in HOP_BY_HOP]
        lines.append(f"Content-Length: {len(data)}")
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)


def handle(conn, ctx, upstream):
    with conn:
        # Unbuffered: the client sends its TLS hello only after our answer, and nothing of it
        # may be read into a buffer the TLS layer does not see.
        head = read_head(conn.makefile("rb", buffering=0))
        if head is None:
            return
        if not head[0].startswith("CONNECT "):
            conn.sendall(b"HTTP/1.1 405 Only CONNECT\r\nContent-Length: 0\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                serve_tunnel(tls, upstream)
        except (ssl.SSLError, OSError) as e:
            print(f"pypi_org_front: {e}", file=sys.stderr, flush=True)


def main():
    port, cert, key, repository = sys.argv[1:5]
    upstream = urllib.parse.urlsplit(repository)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", int(port)))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn, ctx, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
