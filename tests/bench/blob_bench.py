#!/usr/bin/env python3
"""One large blob through wharf and Distribution (Debian's `docker-registry`), side by side in
one run: issue 16's blob goals, wall time and the server's CPU per GiB. Run by hand, never in CI:

    cargo build --release && python3 tests/bench/blob_bench.py [--mib 512 --runs 3 --markdown]

Each server gets a fresh data directory on the same disk (`--workdir`; Distribution without
authentication, wharf with Basic credentials on a hosted repository) and the same workloads, each `--runs` times, with curl as the client (it costs little):
  - monolithic upload: POST a session, PUT the whole blob with `?digest=`
  - chunked upload: POST, PATCH in `--chunks` pieces with Content-Range, PUT to finish
  - GET of the whole blob, and a Range GET of its second half, three times each after each
    monolithic upload (the first GET of a new blob reads the disk if `--direct-writes`)
  - settled GETs: the blob uploaded once more, written out (`sync`), read once, then `--gets`
    GETs in a row: the rate from the page cache without the upload's writeback beside it
    (on this VM that writeback, and the host taking cached pages back, make the GETs right
    after an upload vary by 1.5x from run to run)
Deleting the blob between uploads unlinks it from the repository; a server that keeps the bytes
until a GC (both do) still writes and hashes every upload in full, then finds it has it. Printed: the median of each
(wall seconds, server CPU seconds per GiB) and the ratios; `--markdown` adds a table.
"""
import argparse, base64, hashlib, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, spawn, stop, write_random  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
CREDS = "admin:bench-password"
AUTH = "Basic " + base64.b64encode(CREDS.encode()).decode()


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")




def curl(*args):
    out = subprocess.run(["curl", "-sS", "-u", CREDS, "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", *args], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines if ":" in l}
    return lines[-1], headers


def location(base, headers):
    loc = headers["location"]
    return loc if loc.startswith("http") else base + loc


def with_query(url, q):
    return url + ("&" if "?" in url else "?") + q


class Server:
    def __init__(self, name, proc, base):
        self.name, self.proc, self.base = name, proc, base


def start_registry(work):
    port = free_port()
    cfg = os.path.join(work, "registry.yml")
    open(cfg, "w").write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {work}/registry}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{port}}}
""")
    p = spawn(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return Server("registry", p, f"http://127.0.0.1:{port}")


def start_wharf(work, direct_writes=False):
    port = free_port()
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=f"{work}/wharf", WHARF_ADMIN_PASSWORD="bench-password", RUST_LOG="warn",
               WHARF_UPLOADS__DIRECT_WRITES="true" if direct_writes else "false")
    p = spawn([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/service/rest/v1/status")
    req = urllib.request.Request(f"{base}/service/rest/v1/repositories/docker/hosted", method="POST",
                                 data=json.dumps({"name": "bench", "storage": {"blobStoreName": "default"}, "docker": {}}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": AUTH})
    urllib.request.urlopen(req)
    return Server("wharf", p, base)


def measure(server, fn):
    c0, t0 = cpu_s(server.proc.pid), time.time()
    fn()
    return time.time() - t0, cpu_s(server.proc.pid) - c0


def monolithic(s, path, digest):
    code, h = curl("-X", "POST", f"{s.base}/v2/bench/blob/blobs/uploads/")
    assert code == "202", code
    url = with_query(location(s.base, h), "digest=" + digest)
    code, _ = curl("-X", "PUT", "-H", "Content-Type: application/octet-stream", "-T", path, url)
    assert code == "201", code


def chunked(s, path, digest, size, chunks):
    code, h = curl("-X", "POST", f"{s.base}/v2/bench/blob/blobs/uploads/")
    assert code == "202", code
    url = location(s.base, h)
    step = -(-size // chunks)
    for start in range(0, size, step):
        end = min(size, start + step) - 1
        # curl reads the piece straight from the file: --range is for downloads, so a piece
        # file is cut once up front (see main) and named by its offset.
        code, h = curl("-X", "PATCH", "-H", "Content-Type: application/octet-stream", "-H", f"Content-Range: {start}-{end}",
                       "-T", f"{path}.{start}", url)
        assert code == "202", (code, start)
        url = location(s.base, h)
    code, _ = curl("-X", "PUT", with_query(url, "digest=" + digest))
    assert code == "201", code


def delete(s, digest):
    code, _ = curl("-X", "DELETE", f"{s.base}/v2/bench/blob/blobs/{digest}")
    assert code in ("202", "204"), code


def get(s, digest, size, rng=None):
    args = ["-H", f"Range: bytes={rng}"] if rng else []
    out = subprocess.run(["curl", "-sS", "-u", CREDS, "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *args, f"{s.base}/v2/bench/blob/blobs/{digest}"],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out[0] == ("206" if rng else "200"), out
    assert int(out[1]) == size, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--only", choices=["wharf", "registry"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--gets", type=int, default=10, help="settled GETs in a row")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--direct-writes", action="store_true", help="wharf with uploads.direct_writes on")
    args = ap.parse_args()
    for tool in ("curl", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install curl docker-registry")
    if not os.path.exists(WHARF):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-blob-bench-", dir=args.workdir)
    size = args.mib << 20
    blob = os.path.join(work, "blob")
    digest = write_random(blob, size)
    step = -(-size // args.chunks)
    with open(blob, "rb") as f:
        for start in range(0, size, step):
            with open(f"{blob}.{start}", "wb") as out:
                out.write(f.read(step))
    half = size // 2
    gib = size / 2**30
    results = {}
    try:
        for name, starter in [("registry", start_registry), ("wharf", lambda w: start_wharf(w, args.direct_writes))]:
            if args.only and args.only != name:
                continue
            s = starter(work)
            r = {k: [] for k in ("put", "chunked", "get", "range", "settled")}
            try:
                for _ in range(args.runs):
                    r["put"].append(measure(s, lambda: monolithic(s, blob, digest)))
                    for _ in range(3):
                        r["get"].append(measure(s, lambda: get(s, digest, size)))
                        r["range"].append(measure(s, lambda: get(s, digest, size - half, f"{half}-")))
                    delete(s, digest)
                    r["chunked"].append(measure(s, lambda: chunked(s, blob, digest, size, args.chunks)))
                    delete(s, digest)
                monolithic(s, blob, digest)
                os.sync()
                get(s, digest, size)
                for _ in range(args.gets):
                    r["settled"].append(measure(s, lambda: get(s, digest, size)))
            finally:
                stop(s.proc)
            results[name] = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in r.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [("put", "monolithic PUT", gib), ("chunked", f"chunked upload ({args.chunks} PATCHes)", gib), ("get", "GET", gib), ("range", "Range GET (second half)", gib / 2),
            ("settled", f"GET, settled ({args.gets} in a row)", gib)]
    print(f"\n{args.mib} MiB blob, medians of {args.runs} uploads, {3 * args.runs} downloads after them and {args.gets} settled downloads")
    print(f"{'':34}{'wharf s':>9}{'CPU s/GiB':>10}{'registry s':>11}{'CPU s/GiB':>10}{'speed':>7}{'CPU':>7}")
    w, g = results.get("wharf"), results.get("registry")
    for key, label, amount in rows:
        ws = f"{w[key][0]:9.2f}{w[key][1] / amount:10.2f}" if w else " " * 19
        gs = f"{g[key][0]:11.2f}{g[key][1] / amount:10.2f}" if g else " " * 21
        ratio = f"{g[key][0] / w[key][0]:6.2f}x{g[key][1] / max(w[key][1], 1e-9):6.2f}x" if w and g else ""
        print(f"{label:34}{ws}{gs}{ratio}")
    if args.markdown and w and g:
        print("\n| | wharf s | wharf CPU s/GiB | Distribution s | Distribution CPU s/GiB | wharf faster by | wharf's CPU smaller by |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for key, label, amount in rows:
            print(f"| {label} | {w[key][0]:.2f} | {w[key][1] / amount:.2f} | {g[key][0]:.2f} | {g[key][1] / amount:.2f} | {g[key][0] / w[key][0]:.2f}× | {g[key][1] / max(w[key][1], 1e-9):.2f}× |")


if __name__ == "__main__":
    main()
