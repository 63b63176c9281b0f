"""What the side-by-side benchmarks share: processes that die with the benchmark, ports,
waiting for a server, RSS, and ApacheBench."""
import atexit, hashlib, os, signal, socket, subprocess, sys, time, urllib.error, urllib.request

# Every server a benchmark spawns is killed on the way out, whatever happens.
PROCS = []


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(PROCS):
        stop(p, signal.SIGKILL)


atexit.register(stop_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda *_: sys.exit(130))


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


def io_bytes(pid):
    """(bytes read, bytes written) that a process asked of block devices so far (`/proc/<pid>/io`)."""
    fields = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            fields[k] = int(v)
    return fields["read_bytes"], fields["write_bytes"]


def load(url, seconds, headers=(), method="GET", clients=32):
    """Requests per second at `clients` concurrent keep-alive connections (ApacheBench: unlike
    wrk it reads HEAD answers correctly)."""
    cmd = ["ab", "-q", "-k", "-c", str(clients), "-t", str(seconds), "-n", "100000000"]
    if method == "HEAD":
        cmd.append("-i")
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    bad = [l for l in out.splitlines() if l.startswith("Non-2xx responses") or (l.startswith("Failed requests") and l.split()[-1] != "0")]
    if bad:
        raise SystemExit(f"{method} {url}: {bad}")
    return float([l for l in out.splitlines() if l.startswith("Requests per second")][0].split()[3])


def write_random(path, size):
    """A file of `size` random bytes; its digest, `sha256:<hex>`."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return "sha256:" + h.hexdigest()
