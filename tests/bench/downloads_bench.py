#!/usr/bin/env python3
"""What download tracking costs pulls (issue 12): two wharf builds side by side, one as it is
(A: every download is counted, `DownloadLog::record`) and one with the count made a no-op (B),
under many concurrent GETs of small downloads, where a per-request cost would show. Run by
hand, never in CI:

    cargo build --release && cp target/release/wharf /tmp/wharf-A
    # make `impl wharf_format::Downloads for DownloadLog`'s record() a no-op, build, then revert:
    cargo build --release && cp target/release/wharf /tmp/wharf-B && git checkout src/lifecycle/downloads.rs
    python3 tests/bench/downloads_bench.py --wharf-a /tmp/wharf-A --wharf-b /tmp/wharf-B --seconds 8 --rounds 6

Both servers run at once, each on a fresh data directory (embedded SQLite) with one hosted
Docker, npm and PyPI repository that needs credentials (no anonymous read), and get the same
content once: a 2 KiB Docker blob with its manifest tagged `bench`, a 2 KiB npm tarball and a
2 KiB wheel. Then, for each round and each kind of download, A and B are measured one after the
other (A B, then B A in the next round, so that neither always goes first) with ApacheBench:
`--concurrency` keep-alive connections with Basic credentials, a fixed number of requests per
run (so both serve exactly the same requests; the number is chosen from a warm-up so that a run
takes about `--seconds`). Reported per run: requests/s, p50/p99 latency (ab's percentiles) and
the server's CPU time per request (user + system, all threads, from /proc; 10 ms ticks), a second
view of a per-request cost that does not depend on how much CPU the neighbours leave to ab.

It also checks that A counted every download: after each round, once A's flusher (every 2 s) has
written, each asset's download_count in A's database must equal the number of successful GETs
of it (warm-ups included), and B's must stay 0 (the no-op build really is one); at the end
the components API's downloadCount must agree. With `--perf DIR`, `perf record --call-graph
dwarf` samples A during its first measured run of each kind (which slows that run down by half:
use a separate invocation for the numbers).
"""
import argparse, base64, hashlib, http.client, io, json, os, shutil, signal, sqlite3, statistics, subprocess, sys, tarfile, tempfile, time, zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, spawn, stop, stop_all  # noqa: E402

PASSWORD = "bench-password"
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KINDS = ["docker-blob", "docker-manifest", "npm-tarball", "pypi-file"]



# ---- content ----------------------------------------------------------------------------


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def docker_content():
    layer = os.urandom(2048)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer)}"]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{sha256(config)}", "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{sha256(layer)}", "size": len(layer)}]}).encode()
    return layer, config, manifest


def npm_tarball(name, version):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for fname, data in [("package/package.json", json.dumps({"name": name, "version": version, "main": "index.js"}).encode()),
                            ("package/index.js", b"module.exports = 1;\n"), ("package/data.bin", os.urandom(1800))]:
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel(name, version):
    buf = io.BytesIO()
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name.replace('-', '_')}/data.bin", os.urandom(1800))
    return f"{dist}-py3-none-any.whl", buf.getvalue()


# ---- one server -------------------------------------------------------------------------


class Wharf:
    """One wharf on a fresh data directory, with the content pushed and the URL, headers and
    asset of each kind of download."""

    def __init__(self, label, binary, work, content):
        self.label = label
        self.port = free_port()
        self.data = os.path.join(work, f"data-{label}")
        env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{self.port}", WHARF_DATA_DIR=self.data, WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn",
                   WHARF_GC__SCHEDULE="")
        self.proc = spawn([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"wharf-{label}.log"), "w"))
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.base}/service/rest/v1/status")
        self.expected = {k: 0 for k in KINDS}
        self.targets = {}  # kind -> (url, headers, repository, asset path)
        self.push(content)

    def req(self, method, path, body=None, headers=None, ok=(200, 201, 202, 204)):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Authorization": AUTH}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status not in ok:
            raise SystemExit(f"{self.label}: {method} {path}: {r.status} {data[:300]!r}")
        return r, data

    def create_repo(self, fmt, name, extra=None):
        doc = {"name": name, "anonymousRead": False, "storage": {"blobStoreName": "default"}}
        doc.update(extra or {})
        self.req("POST", f"/service/rest/v1/repositories/{fmt}/hosted", json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def push(self, content):
        layer, config, manifest, tgz, (whl_name, whl) = content
        # Docker: monolithic blob uploads, then the manifest by tag.
        self.create_repo("docker", "dock", {"docker": {}})
        for b in (layer, config):
            self.req("POST", f"/v2/dock/app/blobs/uploads/?digest=sha256:{sha256(b)}", b, {"Content-Type": "application/octet-stream"})
        self.req("PUT", "/v2/dock/app/manifests/bench", manifest, {"Content-Type": OCI_MANIFEST})
        auth = [("Authorization", AUTH)]
        self.targets["docker-blob"] = (f"{self.base}/v2/dock/app/blobs/sha256:{sha256(layer)}", auth, "dock", None)
        self.targets["docker-manifest"] = (f"{self.base}/v2/dock/app/manifests/bench", auth + [("Accept", OCI_MANIFEST)], "dock", None)
        # npm: a publish document with the tarball attached.
        self.create_repo("npm", "npmh")
        name, version = "bench-pkg", "1.0.0"
        fname = f"{name}-{version}.tgz"
        doc = {"_id": name, "name": name, "dist-tags": {"latest": version},
               "versions": {version: {"name": name, "version": version, "main": "index.js",
                                      "dist": {"shasum": hashlib.sha1(tgz).hexdigest(), "tarball": f"{self.base}/repository/npmh/{name}/-/{fname}"}}},
               "_attachments": {fname: {"content_type": "application/octet-stream", "data": base64.b64encode(tgz).decode(), "length": len(tgz)}}}
        self.req("PUT", f"/repository/npmh/{name}", json.dumps(doc).encode(), {"Content-Type": "application/json"})
        _, pack = self.req("GET", f"/repository/npmh/{name}")
        tarball = json.loads(pack)["versions"][version]["dist"]["tarball"]
        self.targets["npm-tarball"] = (tarball, auth, "npmh", None)
        # PyPI: the legacy upload API, as twine speaks it.
        self.create_repo("pypi", "pyh")
        fields = {":action": "file_upload", "name": "bench-pkg", "version": "1.0", "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1",
                  "sha256_digest": sha256(whl)}
        boundary = "----wharfbench" + os.urandom(8).hex()
        body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items())
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{whl_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        body += whl + f"\r\n--{boundary}--\r\n".encode()
        self.req("POST", "/repository/pyh/", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        _, page = self.req("GET", "/repository/pyh/simple/bench-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        url = json.loads(page)["files"][0]["url"].split("#")[0]
        if url.startswith("/"):
            url = self.base + url
        elif not url.startswith("http"):
            url = f"{self.base}/repository/pyh/simple/bench-pkg/{url}"
        self.targets["pypi-file"] = (url, auth, "pyh", None)
        # Each kind's asset, as the formats name it (formats/*/src/meta.rs): the tag for the
        # manifest GET by tag, whose download is the tag's.
        paths = {"docker-blob": ("dock", f"app/blobs/sha256:{sha256(layer)}"), "docker-manifest": ("dock", "app/tags/bench"),
                 "npm-tarball": ("npmh", f"pkg/{name}/-/{fname}"), "pypi-file": ("pyh", f"packages/bench-pkg/{whl_name}")}
        for kind, (repo, path) in paths.items():
            url, hdrs, _, _ = self.targets[kind]
            self.targets[kind] = (url, hdrs, repo, path)
        missing = [k for k, v in self.counts().items() if v[0] is None]
        if missing:
            raise SystemExit(f"{self.label}: no asset for {missing} ({paths})")
        # The content answers, byte for byte, before anything is measured.
        for kind, expect in [("docker-blob", layer), ("docker-manifest", manifest), ("npm-tarball", tgz), ("pypi-file", whl)]:
            url, hdrs, _, _ = self.targets[kind]
            _, got = self.req("GET", url[len(self.base):], headers=dict(hdrs))
            if got != expect:
                raise SystemExit(f"{self.label}: {kind}: {url} answered {len(got)} bytes that differ from what was pushed")
            self.expected[kind] += 1

    def db(self):
        return sqlite3.connect(f"file:{os.path.join(self.data, 'wharf.db')}?mode=ro", uri=True, timeout=30)

    def counts(self):
        db = self.db()
        try:
            out = {}
            for kind, (_, _, repo, path) in self.targets.items():
                row = db.execute("SELECT a.download_count, a.last_downloaded FROM assets a JOIN repositories r ON r.id = a.repository_id WHERE r.name = ? AND a.path = ?",
                                 (repo, path)).fetchone()
                out[kind] = (row[0], row[1]) if row else (None, None)
            return out
        finally:
            db.close()

    def api_counts(self):
        """downloadCount as the components API shows it (Docker blobs are no component)."""
        out = {}
        for kind, repo in [("docker-manifest", "dock"), ("npm-tarball", "npmh"), ("pypi-file", "pyh")]:
            _, body = self.req("GET", f"/service/rest/v1/components?repository={repo}")
            path = self.targets[kind][3]
            out[kind] = sum(a["downloadCount"] for c in json.loads(body)["items"] for a in c["assets"] if a["path"] == path)
        return out


# ---- load -------------------------------------------------------------------------------


def ab(url, headers, n, concurrency, work):
    """One ApacheBench run of exactly n GETs: requests/s, successes, p50/p99 ms."""
    csv = os.path.join(work, "ab.csv")
    cmd = ["ab", "-q", "-k", "-c", str(concurrency), "-n", str(n), "-e", csv]
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout

    def num(prefix, default=None):
        lines = [l for l in out.splitlines() if l.startswith(prefix)]
        if not lines:
            return default
        return float(lines[0].split(":", 1)[1].split()[0])

    complete, failed, non2xx = int(num("Complete requests")), int(num("Failed requests")), int(num("Non-2xx responses", 0))
    pct = {}
    with open(csv) as f:
        for line in f.read().splitlines()[1:]:
            p, t = line.split(",")
            pct[int(p)] = float(t)
    return {"rps": num("Requests per second"), "complete": complete, "ok": complete - failed - non2xx, "bad": failed + non2xx,
            "p50": pct[50], "p99": pct[99]}


def check_counts(servers, timeout=15):
    """Polls until each server's counts are what its flusher must write (A: every successful
    GET; B: nothing), or the time runs out; returns (ok, per-server counts)."""
    deadline = time.time() + timeout
    while True:
        got = {s.label: s.counts() for s in servers}
        want = {s.label: {k: (s.expected[k] if s.label == "A" else 0) for k in KINDS} for s in servers}
        if all(got[l][k][0] == want[l][k] for l in got for k in KINDS) or time.time() > deadline:
            return all(got[l][k][0] == want[l][k] for l in got for k in KINDS), got, want
        time.sleep(0.25)


def cpu_s(pid):
    """User + system CPU seconds the process (all its threads) has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wharf-a", required=True, help="wharf as it is (downloads counted)")
    ap.add_argument("--wharf-b", required=True, help="wharf with DownloadLog::record a no-op")
    ap.add_argument("--seconds", type=float, default=8, help="about how long each measured run takes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    ap.add_argument("--perf", help="directory for perf.data of A's first run of each kind (perf record --call-graph dwarf)")
    ap.add_argument("--json", help="write every run's numbers here")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    for tool in ["ab"] + (["perf"] if args.perf else []):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install apache2-utils / linux-perf)")
    for b in (args.wharf_a, args.wharf_b):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"{b} is not an executable")
    work = tempfile.mkdtemp(prefix="wharf-dl-bench-")
    try:
        layer, config, manifest = docker_content()
        content = (layer, config, manifest, npm_tarball("bench-pkg", "1.0.0"), wheel("bench-pkg", "1.0"))
        a = Wharf("A", args.wharf_a, work, content)
        b = Wharf("B", args.wharf_b, work, content)
        servers = {"A": a, "B": b}
        print(f"A: {args.wharf_a} (pid {a.proc.pid}), B: {args.wharf_b} (pid {b.proc.pid}); c={args.concurrency}, load average {' '.join(loadavg())}", flush=True)

        # Warm-up on both (counted like any GET), which also sets each kind's request count.
        n_of = {}
        for kind in kinds:
            rps = []
            for s in (a, b):
                url, hdrs, _, _ = s.targets[kind]
                r = ab(url, hdrs, 2000, args.concurrency, work)
                if r["bad"]:
                    raise SystemExit(f"{s.label} {kind}: {r['bad']} failed warm-up requests")
                s.expected[kind] += r["ok"]
                rps.append(r["rps"])
            n_of[kind] = max(1000, int(min(rps) * args.seconds))
            print(f"warm-up {kind}: A {rps[0]:.0f} req/s, B {rps[1]:.0f} req/s -> {n_of[kind]} requests per run", flush=True)
        ok, got, want = check_counts([a, b])
        if not ok:
            raise SystemExit(f"counts after the warm-up: got {got}, want {want}")

        runs = []  # dicts: round, kind, server, rps, p50, p99, load
        count_checks = []
        for rnd in range(args.rounds):
            order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
            for kind in kinds:
                for label in order:
                    s = servers[label]
                    url, hdrs, _, _ = s.targets[kind]
                    perf = None
                    if args.perf and label == "A" and rnd == 0:
                        os.makedirs(args.perf, exist_ok=True)
                        perf = spawn(["perf", "record", "-q", "--call-graph", "dwarf,8192", "-F", "999", "-p", str(s.proc.pid), "-o", os.path.join(args.perf, f"{kind}.data")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(1)  # perf attaches
                    la = loadavg()[0]
                    c0 = cpu_s(s.proc.pid)
                    r = ab(url, hdrs, n_of[kind], args.concurrency, work)
                    r["cpu_us"] = (cpu_s(s.proc.pid) - c0) / n_of[kind] * 1e6
                    if perf:
                        stop(perf, signal.SIGINT)
                    s.expected[kind] += r["ok"]
                    r.update(round=rnd + 1, kind=kind, server=label, load=la)
                    runs.append(r)
                    print(f"round {rnd + 1} {kind:16} {label}: {r['rps']:9.1f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                          f"server CPU {r['cpu_us']:5.1f} µs/req  ({r['ok']} ok, {r['bad']} bad; load {la})", flush=True)
            ok, got, want = check_counts([a, b])
            count_checks.append({"round": rnd + 1, "ok": ok, "got": got, "want": want})
            print(f"round {rnd + 1} counts after flush: A {({k: got['A'][k][0] for k in kinds})} want {({k: want['A'][k] for k in kinds})}; "
                  f"B {({k: got['B'][k][0] for k in kinds})}: {'OK' if ok else 'MISMATCH'}", flush=True)
        api = a.api_counts()
        api_ok = all(api[k] == a.expected[k] for k in api)
        print(f"A's components API downloadCount: {api} ({'matches' if api_ok else 'DIFFERS from'} the successful GETs)")
        final_load = loadavg()

        print(f"\nload average at the end: {' '.join(final_load)}")
        print(f"\n{'kind':16}{'A req/s':>10}{'B req/s':>10}{'A/B':>7}{'A p50':>8}{'B p50':>8}{'A p99':>8}{'B p99':>8}{'A CPU':>8}{'B CPU':>8}   (median over {args.rounds} rounds; latency ms, CPU µs/req)")
        summary = {}
        for kind in kinds:
            med = {l: {m: statistics.median(r[m] for r in runs if r["kind"] == kind and r["server"] == l) for m in ("rps", "p50", "p99", "cpu_us")} for l in "AB"}
            summary[kind] = med
            print(f"{kind:16}{med['A']['rps']:10.1f}{med['B']['rps']:10.1f}{med['A']['rps'] / med['B']['rps']:7.3f}"
                  f"{med['A']['p50']:8.2f}{med['B']['p50']:8.2f}{med['A']['p99']:8.2f}{med['B']['p99']:8.2f}{med['A']['cpu_us']:8.1f}{med['B']['cpu_us']:8.1f}")
        print("\nA/B requests/s, run by run (each A run next to the B run of the same round and kind):")
        for kind in kinds:
            ratios = [ra["rps"] / rb["rps"] for ra in runs for rb in runs
                      if ra["kind"] == rb["kind"] == kind and ra["round"] == rb["round"] and ra["server"] == "A" and rb["server"] == "B"]
            summary[kind]["ratios"] = ratios
            print(f"{kind:16}" + " ".join(f"{x:5.2f}" for x in ratios) + f"   median {statistics.median(ratios):.3f}, range {min(ratios):.2f}-{max(ratios):.2f}")
        if args.json:
            json.dump({"args": vars(args), "runs": runs, "counts": count_checks, "api_counts": api, "summary": summary, "load_end": final_load}, open(args.json, "w"), indent=1)
        all_ok = all(c["ok"] for c in count_checks) and api_ok
        print("\ndownload counts: " + ("A counted every successful GET, B none" if all_ok else "MISMATCH (see above)"))
        stop(a.proc)
        stop(b.proc)
        sys.exit(0 if all_ok else 1)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
