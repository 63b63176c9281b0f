#!/usr/bin/env python3
"""How long the console's browse and search requests take on a repository with 10,000
components (issue 14: "page loads stay under 100 ms ... with 10,000 components"). Run by hand,
never in CI:

    cargo build --release && python3 tests/bench/browse_bench.py [--components 10000] [--wharf target/release/wharf]

Two Docker repositories, seeded over the registry API with one small image manifest: `wide`
holds `--components` images of one tag each (browse's first level pages over names), `deep`
one image with `--components` tags (the second level sorts all of an image's tags). Each
request the console makes is timed (median and worst of 20, server and client on this machine).
"""
import argparse, base64, hashlib, http.client, json, os, statistics, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, spawn, stop, wait_http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "bench-password"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
MT = "application/vnd.oci.image.manifest.v1+json"


class Conn:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        r = self.c.getresponse()
        data = r.read()
        return r.status, data


def seed(port, n):
    c = Conn(port)
    for name in ("wide", "deep"):
        body = json.dumps({"name": name, "online": True, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {"forceBasicAuth": True}})
        st, out = c.call("POST", "/service/rest/v1/repositories/docker/hosted", body, {"Content-Type": "application/json"})
        assert st == 201, out
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(config)}, "layers": []})

    def put(jobs):
        conn = Conn(port)
        for repo, image, tag in jobs:
            st, out = conn.call("POST", f"/v2/{repo}/{image}/blobs/uploads/?digest={digest}", config)
            assert st == 201, out
            st, out = conn.call("PUT", f"/v2/{repo}/{image}/manifests/{tag}", manifest, {"Content-Type": MT})
            assert st == 201, out

    jobs = [("wide", f"img/n{i:05d}", "v1") for i in range(n)] + [("deep", "app", f"t{i:05d}") for i in range(n)]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, [jobs[k::8] for k in range(8)]))


def timed(conn, path, rounds=20):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        st, out = conn.call("GET", path)
        times.append((time.perf_counter() - t) * 1000)
        assert st == 200, (path, out[:300])
    return statistics.median(times), max(times), json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--components", type=int, default=10000)
    ap.add_argument("--wharf", default=os.path.join(ROOT, "target/release/wharf"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wharf-browse-bench-")
    port = free_port()
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=os.path.join(work, "data"), WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    w = spawn([a.wharf, "serve"], env=env, stderr=open(os.path.join(work, "wharf.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
    t = time.time()
    seed(port, a.components)
    print(f"seeded {a.components} images of one tag (wide) and one image of {a.components} tags (deep) in {time.time() - t:.0f} s")
    c = Conn(port)
    rows = []

    def row(what, path):
        med, worst, out = timed(c, path)
        rows.append((what, med, worst, len(out.get("items", []))))
        return out

    first = row("names, first page (wide)", "/service/rest/v1/search/names?repository=wide")
    mid = first
    middle = max(1, a.components // 100)  # halfway through
    for _ in range(middle - 1):
        mid = json.loads(c.call("GET", "/service/rest/v1/search/names?repository=wide&continuationToken=" + mid["continuationToken"])[1])
    row(f"names, page {middle + 1} (wide)", "/service/rest/v1/search/names?repository=wide&continuationToken=" + mid["continuationToken"])
    row("names, part of the name (wide; what browse's filter sends)", "/service/rest/v1/search/names?repository=wide&name=*n0199*")
    row("components, first page (wide)", "/service/rest/v1/search?repository=wide")
    row("components list, first 100 (wide)", "/service/rest/v1/components?repository=wide")
    row("names, first page (deep: one image)", "/service/rest/v1/search/names?repository=deep")
    row("tags newest first, first page (deep)", "/service/rest/v1/search?repository=deep&name=app&sort=version")
    row("tags in name order, first page (deep)", "/service/rest/v1/search?repository=deep&name=app")
    row("search every repository, keyword (scans them)", "/service/rest/v1/search?q=n0199")
    print("\n| request | median ms | worst ms | items |\n|---|---:|---:|---:|")
    for what, med, worst, n in rows:
        print(f"| {what} | {med:.1f} | {worst:.1f} | {n} |")
    stop(w)


if __name__ == "__main__":
    main()
