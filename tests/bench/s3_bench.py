#!/usr/bin/env python3
"""Side-by-side benchmark on one S3 server: wharf with its default blob store in a bucket against
the CNCF Distribution registry (Debian's `docker-registry` 2.8) with its `s3` storage driver, both
on the same SeaweedFS (`weed mini`, started here on loopback). Run by hand, never in CI:

    cargo build --release && python3 tests/bench/s3_bench.py [--layers 8 --layer-mib 128]

For each server, on a bucket of its own: skopeo push and pull of one image of N gzip layers,
wall time and the server's CPU; then a pull with downloads redirected to presigned URLs of the
bucket (Distribution: its default for the s3 driver, `storage.redirect.disable: false`; wharf:
the blob store's `preSignedUrlEnabled`). SeaweedFS's own CPU is reported too: it is the same
program behind both. Prints a markdown table with the ratios and the goals of issue 13.
"""
import argparse, base64, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, rss_kb, spawn, stop, stop_all  # noqa: E402
import docker_bench  # noqa: E402
from docker_bench import cpu_s, make_layout, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
WEED_SH = os.path.join(ROOT, "tests/s3/weed.sh")
PASSWORD = "bench-password"


def start_weed(work):
    env = dict(os.environ)
    venv_weed = os.path.join(ROOT, "target/test-venv/bin/weed")
    if "WEED" not in env and os.path.exists(venv_weed):
        env["WEED"] = venv_weed
    os.makedirs(os.path.join(work, "weed"), exist_ok=True)
    out = subprocess.run(["bash", WEED_SH, "start", "--dir", os.path.join(work, "weed"), "--bucket", "registry,wharf"],
                         check=True, capture_output=True, text=True, env=env).stdout
    vals = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            vals[k.strip().removeprefix("export ").strip()] = v.strip().strip("'\"")
    return vals


def copy(src, dst, src_creds=None, dst_creds=None):
    args = ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if src_creds:
        args += ["--src-creds", src_creds]
    if dst_creds:
        args += ["--dest-creds", dst_creds]
    return timed(args + [src, dst])


def curl_pull(image_ref, size, creds=None):
    """GETs every layer of the image at once, one curl each (following a redirect, as a client
    does, without passing the credentials on), into /dev/null: a pull whose client costs little
    (skopeo's own digest checks and file writes take most of its pull's time). Wall seconds."""
    host, rest = image_ref.split("/", 1)
    repo = rest.rsplit(":", 1)[0]
    cmds = [["curl", "-sS", "--fail", "-L", "-o", "/dev/null", "-w", "%{size_download}"] + (["-u", creds] if creds else []) +
            [f"http://{host}/v2/{repo}/blobs/{d}"] for d in docker_bench.LAYERS]
    t = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE) for c in cmds]
    got = sum(int(p.communicate()[0] or 0) for p in procs)
    took = time.monotonic() - t
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    assert got >= size * 0.99, (got, size)
    return took


def run_server(name, pid, weed_pid, image_ref, layout, size, work, creds=None, redirect_on=None):
    """Push, pull (skopeo, then curl), then (after `redirect_on()`) the same pulls redirected;
    times and CPU seconds."""
    res = {}
    c0, w0 = cpu_s(pid), cpu_s(weed_pid)
    res["push_s"] = copy(f"oci:{layout}:bench", f"docker://{image_ref}", dst_creds=creds)
    c1, w1 = cpu_s(pid), cpu_s(weed_pid)
    pull = os.path.join(work, f"pull-{name}")
    res["pull_s"] = copy(f"docker://{image_ref}", f"oci:{pull}:bench", src_creds=creds)
    c2, w2 = cpu_s(pid), cpu_s(weed_pid)
    shutil.rmtree(pull, ignore_errors=True)
    gib = size / 2**30
    res.update(push_cpu=(c1 - c0) / gib, pull_cpu=(c2 - c1) / gib, push_weed_cpu=(w1 - w0) / gib, pull_weed_cpu=(w2 - w1) / gib)
    res["curl_pull_s"] = curl_pull(image_ref, size, creds)
    if redirect_on:
        redirect_on()
        c3, w3 = cpu_s(pid), cpu_s(weed_pid)
        res["redirect_pull_s"] = copy(f"docker://{image_ref}", f"oci:{pull}:bench", src_creds=creds)
        c4, w4 = cpu_s(pid), cpu_s(weed_pid)
        shutil.rmtree(pull, ignore_errors=True)
        res.update(redirect_pull_cpu=(c4 - c3) / gib, redirect_pull_weed_cpu=(w4 - w3) / gib)
        res["redirect_curl_pull_s"] = curl_pull(image_ref, size, creds)
    return res


# The AWS SDK in Distribution refuses to start when AWS_CA_BUNDLE is set (its HTTP transport is
# its own); nothing here talks TLS.
REGISTRY_ENV = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


def registry_config(path, port, s3, redirect):
    with open(path, "w") as f:
        f.write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage:
  s3:
    accesskey: {s3['S3_ACCESS_KEY_ID']}
    secretkey: {s3['S3_SECRET_ACCESS_KEY']}
    region: us-east-1
    regionendpoint: {s3['S3_ENDPOINT']}
    forcepathstyle: true
    bucket: registry
    secure: false
    v4auth: true
    rootdirectory: /distribution
  delete: {{enabled: true}}
  redirect: {{disable: {str(not redirect).lower()}}}
http: {{addr: 127.0.0.1:{port}}}
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layer-mib", type=int, default=128)
    ap.add_argument("--wharf", default=WHARF)
    ap.add_argument("--blob-cache-mib", type=int, default=0,
                    help="wharf's [blob_cache] max_mib: its first pull fills the node's copies, the curl pull after it reads them")
    args = ap.parse_args()
    for tool in ("skopeo", "docker-registry", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install skopeo docker-registry curl")
    if not os.path.exists(args.wharf):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-s3-bench-")
    s3 = None
    try:
        layout = os.path.join(work, "layout")
        _, size = make_layout(layout, args.layers, args.layer_mib)
        print(f"image: {args.layers} layers, {size / 2**20:.0f} MiB; load average {os.getloadavg()[0]:.1f}", flush=True)
        s3 = start_weed(work)
        weed_pid = int(s3["WEED_PID"])

        # Distribution: pushes and pulls with its redirect off, then a pull with it on (a
        # restart with the other setting, same bucket).
        port = free_port()
        cfg = os.path.join(work, "registry.yml")
        registry_config(cfg, port, s3, redirect=False)
        reg = spawn(["docker-registry", "serve", cfg], env=REGISTRY_ENV, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "registry.log"), "w"))
        wait_http(f"http://127.0.0.1:{port}/v2/")
        state = {"proc": reg}

        def registry_redirect():
            stop(state["proc"])
            registry_config(cfg, port, s3, redirect=True)
            state["proc"] = spawn(["docker-registry", "serve", cfg], env=REGISTRY_ENV, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "registry.log"), "a"))
            wait_http(f"http://127.0.0.1:{port}/v2/")

        r = run_server("registry", reg.pid, weed_pid, f"127.0.0.1:{port}/bench/app:bench", layout, size, work)
        registry_redirect()
        c3, w3 = cpu_s(state["proc"].pid), cpu_s(weed_pid)
        pull = os.path.join(work, "pull-registry-redirect")
        r["redirect_pull_s"] = copy(f"docker://127.0.0.1:{port}/bench/app:bench", f"oci:{pull}:bench")
        r["redirect_pull_cpu"] = (cpu_s(state["proc"].pid) - c3) / (size / 2**30)
        r["redirect_pull_weed_cpu"] = (cpu_s(weed_pid) - w3) / (size / 2**30)
        shutil.rmtree(pull, ignore_errors=True)
        r["redirect_curl_pull_s"] = curl_pull(f"127.0.0.1:{port}/bench/app:bench", size)
        stop(state["proc"])

        # wharf: its default store in the other bucket.
        port = free_port()
        data = os.path.join(work, "wharf-data")
        env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=data, WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn",
                   WHARF_S3__ENDPOINT=s3["S3_ENDPOINT"], WHARF_S3__BUCKET="wharf", WHARF_S3__ACCESS_KEY_ID=s3["S3_ACCESS_KEY_ID"],
                   WHARF_S3__SECRET_ACCESS_KEY=s3["S3_SECRET_ACCESS_KEY"], WHARF_S3__FORCE_PATH_STYLE="true",
                   WHARF_BLOB_CACHE__MAX_MIB=str(args.blob_cache_mib))
        w = spawn([args.wharf, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "wharf.log"), "w"))
        wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
        auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

        def call(method, path, doc=None):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(doc).encode() if doc is not None else None,
                                         headers={"Content-Type": "application/json", "Authorization": auth})
            with urllib.request.urlopen(req) as resp:
                body = resp.read()
                return json.loads(body) if body else None

        call("POST", "/service/rest/v1/repositories/docker/hosted",
             {"name": "bench", "online": True, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {}})

        def wharf_redirect():
            store = call("GET", "/service/rest/v1/blobstores/s3/default")
            store["bucketConfiguration"]["preSignedUrlEnabled"] = True
            call("PUT", "/service/rest/v1/blobstores/s3/default", store)

        wr = run_server("wharf", w.pid, weed_pid, f"127.0.0.1:{port}/bench/app:bench", layout, size, work, creds=f"admin:{PASSWORD}", redirect_on=wharf_redirect)
        wr["peak_rss_mb"] = rss_kb(w.pid, "VmHWM") / 1024
        wr["idle_rss_mb"] = rss_kb(w.pid, "VmRSS") / 1024
        stop(w)
    finally:
        stop_all()
        if s3:
            subprocess.run(["bash", WEED_SH, "stop", s3["WEED_DIR"]], check=False, capture_output=True)
        if os.environ.get("KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    def ratio(k):
        return r[k] / wr[k]

    print(f"\n{args.layers} layers, {size / 2**20:.0f} MiB, one SeaweedFS `weed mini` for both; wharf's blob cache {args.blob_cache_mib} MiB\n")
    print("| | wharf (S3 store) | Distribution (s3 driver) | wharf faster by | goal |")
    print("|---|---:|---:|---:|---:|")
    for k, label, goal in [("push_s", "skopeo push, s", 1.5), ("pull_s", "skopeo pull, s", 1.5), ("curl_pull_s", "pull of the layers with curl, s", 1.5),
                           ("redirect_pull_s", "skopeo pull, redirected to the bucket, s", 2.0), ("redirect_curl_pull_s", "curl pull, redirected, s", 2.0)]:
        print(f"| {label} | {wr[k]:.2f} | {r[k]:.2f} | {ratio(k):.2f}× | ≥ {goal}× {'met' if ratio(k) >= goal else '**missed**'} |")
    for k, label in [("push_cpu", "server CPU per GiB pushed, s"), ("pull_cpu", "server CPU per GiB pulled, s"), ("redirect_pull_cpu", "server CPU per GiB pulled, redirected, s"),
                     ("push_weed_cpu", "SeaweedFS CPU per GiB pushed, s"), ("pull_weed_cpu", "SeaweedFS CPU per GiB pulled, s")]:
        print(f"| {label} | {wr[k]:.2f} | {r[k]:.2f} | | |")
    print(f"\nwharf's peak RSS over the run (VmHWM): {wr['peak_rss_mb']:.1f} MB; after it: {wr['idle_rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
