"""What the side-by-side benchmarks share: ports, waiting for a server, RSS, and ApacheBench."""
import os, socket, subprocess, time, urllib.error, urllib.request


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except Exception:
            time.sleep(0.01)
    raise SystemExit(f"{url} did not answer")


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def load(url, seconds, headers=(), method="GET"):
    """Requests per second at 32 concurrent keep-alive connections (ApacheBench: unlike wrk it
    reads HEAD answers correctly)."""
    cmd = ["ab", "-q", "-k", "-c", "32", "-t", str(seconds), "-n", "100000000"]
    if method == "HEAD":
        cmd.append("-i")
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    bad = [l for l in out.splitlines() if l.startswith("Non-2xx responses") or (l.startswith("Failed requests") and l.split()[-1] != "0")]
    if bad:
        raise SystemExit(f"{method} {url}: {bad}")
    return float([l for l in out.splitlines() if l.startswith("Requests per second")][0].split()[3])
