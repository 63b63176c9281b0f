#!/usr/bin/env python3
"""Side-by-side benchmark: wharf against the CNCF Distribution registry (Debian's
`docker-registry`) on this machine, in one run. Run by hand, never in CI:

    cargo build --release && python3 tests/bench/docker_bench.py [--layers 8 --layer-mib 128]

It measures, for each server on a fresh data directory:
  - push and pull of one image of N layers (skopeo, oci layout <-> registry), MB/s
  - manifest GET and HEAD requests per second at 32 concurrent connections (ab -k)
  - wharf only: time from start to first answered request, idle RSS, peak RSS (VmHWM) over
    the whole run
and prints the ratios wharf / registry. Both servers run without authentication on the
measured paths (wharf: a repository with anonymousRead) so that the comparison is like for like;
a second wharf manifest run uses Basic credentials to show what authentication costs.

`--raw-rounds N` runs only the curl x8 blob push and pull, N rounds on fresh servers, the two
alternating, and prints the medians: the rows that a client costing little measures best.
"""
import argparse, hashlib, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, rss_kb, load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))








def cpu_s(pid):
    """User + system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_layout(path, layers, layer_mib):
    """An OCI layout with `layers` gzip layers of random data. They are compressed here, once
    (level 1), because skopeo gzips uncompressed layers on every push: the benchmark measures the
    servers, not skopeo's compressor."""
    import gzip
    os.makedirs(f"{path}/blobs/sha256", exist_ok=True)
    descs, diff_ids = [], []
    global LAYERS
    LAYERS = []
    chunk = 1 << 20
    for i in range(layers):
        raw_h = hashlib.sha256()
        tmp = f"{path}/blobs/tmp"
        with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1, mtime=0) as gz:
            for _ in range(layer_mib):
                b = os.urandom(chunk)
                raw_h.update(b); gz.write(b)
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for b in iter(lambda: f.read(chunk), b""):
                h.update(b)
        d = h.hexdigest()
        size = os.path.getsize(tmp)
        os.rename(tmp, f"{path}/blobs/sha256/{d}")
        LAYERS.append(f"sha256:{d}")
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{d}", "size": size})
        diff_ids.append(f"sha256:{raw_h.hexdigest()}")
    def put(b):
        d = hashlib.sha256(b).hexdigest()
        open(f"{path}/blobs/sha256/{d}", "wb").write(b)
        return f"sha256:{d}", len(b)
    cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                             "layers": descs}).encode())
    open(f"{path}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                                                  "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, open(f"{path}/index.json", "w"))
    return md, sum(x["size"] for x in descs)


def timed(cmd):
    t = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t




def raw_http(base, repo, layout, layers, size, auth):
    """Blob push (POST, then PUT with the whole body) and pull of every layer, all layers in
    parallel, with curl: the transfer with a client far lighter than skopeo. The body is sent
    with `-T`, which streams the file; `--data-binary @file` first reads all of it into memory
    (a 128 MiB allocation and copy per layer, as much CPU as the server's receive on this
    two-core machine, which the servers then lack)."""
    import concurrent.futures
    auth_args = ["-u", auth] if auth else []
    def push(d):
        hdrs = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "-X", "POST", *auth_args, f"{base}/v2/{repo}/blobs/uploads/"],
                              check=True, capture_output=True, text=True).stdout
        loc = [l.split(":", 1)[1].strip() for l in hdrs.splitlines() if l.lower().startswith("location:")][0]
        if loc.startswith("/"):
            loc = base + loc
        sep = "&" if "?" in loc else "?"
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", *auth_args, "-H", "Content-Type: application/octet-stream",
                              "-T", f"{layout}/blobs/sha256/{d.split(':')[1]}", f"{loc}{sep}digest={d}"], check=True, capture_output=True, text=True).stdout
        assert out == "201", out
    def pull(d):
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *auth_args, f"{base}/v2/{repo}/blobs/{d}"], check=True, capture_output=True, text=True).stdout
        assert out == "200", out
    res = {}
    with concurrent.futures.ThreadPoolExecutor(len(layers)) as ex:
        t = time.time(); list(ex.map(push, layers)); res["raw_push_MBps"] = size / (time.time() - t) / 1e6
        t = time.time(); list(ex.map(pull, layers)); res["raw_pull_MBps"] = size / (time.time() - t) / 1e6
    return res


def start_registry(work, tag):
    """Distribution on a fresh root directory under `work`: (process, base URL)."""
    port = free_port()
    cfg = os.path.join(work, f"registry-{tag}.yml")
    open(cfg, "w").write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {os.path.join(work, f"registry-{tag}")}}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{port}}}
""")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return p, f"http://127.0.0.1:{port}"


def start_wharf(work, tag):
    """wharf on a fresh data directory under `work`, with a hosted Docker repository `bench`:
    (process, base URL)."""
    port = free_port()
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=os.path.join(work, f"wharf-{tag}"), WHARF_ADMIN_PASSWORD="bench-password", RUST_LOG="warn")
    w = subprocess.Popen([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/service/rest/v1/repositories/docker/hosted", method="POST",
                                 data=json.dumps({"name": "bench", "anonymousRead": True, "storage": {"blobStoreName": "default"}, "docker": {}}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Basic " + __import__("base64").b64encode(b"admin:bench-password").decode()})
    urllib.request.urlopen(req)
    return w, f"http://127.0.0.1:{port}"


def raw_rounds(layout, size, rounds, work):
    """Only the curl x8 blob push and pull, `rounds` times, each on fresh servers, the two
    servers alternating: the same workload as the full run's curl rows without what runs
    before them there (skopeo, the manifest loads), and a median over rounds."""
    rows = {"wharf": [], "registry": []}
    for i in range(rounds):
        for name in ("registry", "wharf") if i % 2 == 0 else ("wharf", "registry"):
            p, base = (start_registry if name == "registry" else start_wharf)(work, f"raw{i}")
            try:
                subprocess.run(["sync"], check=True)
                res = raw_http(base, "bench/raw", layout, LAYERS, size, "admin:bench-password" if name == "wharf" else None)
            finally:
                p.send_signal(signal.SIGTERM); p.wait()
            rows[name].append(res)
            print(f"round {i + 1} {name:9} push {res['raw_push_MBps']:7.0f} MB/s  pull {res['raw_pull_MBps']:7.0f} MB/s", flush=True)
    med = lambda name, k: statistics.median(r[k] for r in rows[name])
    print(f"\n{'medians, MB/s':28}{'wharf':>12}{'registry':>12}{'ratio':>8}")
    for k, label in [("raw_push_MBps", "blob push (curl x8)"), ("raw_pull_MBps", "blob pull (curl x8)")]:
        print(f"{label:28}{med('wharf', k):12.1f}{med('registry', k):12.1f}{med('wharf', k) / med('registry', k):8.2f}")


def bench_server(name, pid, base, image_ref, layout, size, manifest_digest, accept, work, seconds, creds=None):
    res = {}
    c0 = cpu_s(pid)
    pull_dir = os.path.join(work, f"pull-{name}")
    cred_args = ["--dest-creds", creds] if creds else []
    res["push_s"] = timed(["skopeo", "copy", "--dest-tls-verify=false", *cred_args, f"oci:{layout}:bench", f"docker://{image_ref}"])
    c1 = cpu_s(pid)
    src_creds = ["--src-creds", creds] if creds else []
    res["pull_s"] = timed(["skopeo", "copy", "--src-tls-verify=false", *src_creds, f"docker://{image_ref}", f"oci:{pull_dir}:bench"])
    c2 = cpu_s(pid)
    res["push_cpu_s_per_GiB"] = (c1 - c0) / (size / 2**30)
    res["pull_cpu_s_per_GiB"] = (c2 - c1) / (size / 2**30)
    shutil.rmtree(pull_dir, ignore_errors=True)
    res["push_MBps"] = size / res["push_s"] / 1e6
    res["pull_MBps"] = size / res["pull_s"] / 1e6
    path = "/v2/" + image_ref.split("/", 1)[1].rsplit(":", 1)[0] + "/manifests/bench"
    hdr = [("Accept", accept)]
    res["manifest_get_rps"] = load(base + path, seconds, hdr, method="GET")
    res["manifest_head_rps"] = load(base + path, seconds, hdr, method="HEAD")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layer-mib", type=int, default=128)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--raw-rounds", type=int, default=0, help="only the curl x8 blob push and pull, this many rounds on fresh servers")
    args = ap.parse_args()
    for tool in ("skopeo", "ab", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install skopeo apache2-utils docker-registry")
    if not os.path.exists(WHARF):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-bench-")
    layout = os.path.join(work, "layout")
    manifest_digest, size = make_layout(layout, args.layers, args.layer_mib)
    accept = "application/vnd.oci.image.manifest.v1+json"
    print(f"image: {args.layers} layers, {size / 2**20:.0f} MiB", flush=True)
    if args.raw_rounds:
        try:
            raw_rounds(layout, size, args.raw_rounds, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return

    # Distribution
    reg_port = free_port()
    reg_dir = os.path.join(work, "registry")
    cfg = os.path.join(work, "registry.yml")
    open(cfg, "w").write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {reg_dir}}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{reg_port}}}
""")
    reg = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{reg_port}/v2/")
    r = bench_server("registry", reg.pid, f"http://127.0.0.1:{reg_port}", f"127.0.0.1:{reg_port}/bench/app:bench", layout, size, manifest_digest, accept, work, args.seconds)
    r.update(raw_http(f"http://127.0.0.1:{reg_port}", "bench/raw", layout, LAYERS, size, None))
    reg.send_signal(signal.SIGTERM); reg.wait()

    # wharf
    port = free_port()
    data = os.path.join(work, "wharf-data")
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=data, WHARF_ADMIN_PASSWORD="bench-password", RUST_LOG="warn")
    t0 = time.time()
    w = subprocess.Popen([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
    start_s = time.time() - t0
    time.sleep(1)
    idle_rss = rss_kb(w.pid, "VmRSS")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/service/rest/v1/repositories/docker/hosted", method="POST",
                                 data=json.dumps({"name": "bench", "anonymousRead": True, "storage": {"blobStoreName": "default"}, "docker": {}}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Basic " + __import__("base64").b64encode(b"admin:bench-password").decode()})
    urllib.request.urlopen(req)
    wr = bench_server("wharf", w.pid, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}/bench/app:bench", layout, size, manifest_digest, accept, work, args.seconds, creds="admin:bench-password")
    wr.update(raw_http(f"http://127.0.0.1:{port}", "bench/raw", layout, LAYERS, size, "admin:bench-password"))
    basic = [("Authorization", "Basic " + __import__("base64").b64encode(b"admin:bench-password").decode())]
    wr["manifest_get_rps_basic_auth"] = load(f"http://127.0.0.1:{port}/v2/bench/app/manifests/bench", args.seconds, [("Accept", accept)] + basic)
    peak_rss = rss_kb(w.pid, "VmHWM")
    w.send_signal(signal.SIGTERM); w.wait()
    shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'':28}{'wharf':>12}{'registry':>12}{'ratio':>8}")
    for k, label in [("push_MBps", "push MB/s (skopeo)"), ("pull_MBps", "pull MB/s (skopeo)"), ("raw_push_MBps", "blob push MB/s (curl x8)"), ("raw_pull_MBps", "blob pull MB/s (curl x8)"), ("manifest_get_rps", "manifest GET req/s (c=32)"), ("manifest_head_rps", "manifest HEAD req/s (c=32)")]:
        print(f"{label:28}{wr[k]:12.1f}{r[k]:12.1f}{wr[k] / r[k]:8.2f}")
    for k, label in [("push_cpu_s_per_GiB", "server CPU s/GiB, push"), ("pull_cpu_s_per_GiB", "server CPU s/GiB, pull")]:
        print(f"{label:28}{wr[k]:12.2f}{r[k]:12.2f}{r[k] / wr[k]:8.2f}")
    print(f"{'manifest GET, Basic auth':28}{wr['manifest_get_rps_basic_auth']:12.1f}")
    print(f"\nwharf start to first answer: {start_s * 1000:.0f} ms; idle RSS {idle_rss / 1024:.1f} MB; peak RSS over the run {peak_rss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
