#!/usr/bin/env python3
"""Manifest GET rate of two wharf nodes behind a load balancer against one node (issue 13: at
least 1.6×). Both nodes share one PostgreSQL (started here) and one file blob store at an
absolute path; haproxy (Debian's `haproxy`) balances round-robin with keep-alive. Run by hand,
never in CI:

    cargo build --release && python3 tests/bench/cluster_bench.py [--seconds 10]

Measured with ApacheBench at 32 keep-alive connections, anonymous (the repository grants
anonymous read): node A directly, haproxy with only A behind it (what the balancer costs), and
haproxy with A and B. On a machine with few cores every process (the client, haproxy, both
nodes, PostgreSQL) shares them: the ratio then says how much the cores allow, not how wharf
scales; the core count is printed with it.
"""
import argparse, base64, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, load, spawn, stop, stop_all  # noqa: E402
from docker_bench import make_layout  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
PASSWORD = "bench-password"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def pg_bin():
    base = "/usr/lib/postgresql"
    return os.path.join(base, sorted(os.listdir(base), key=lambda v: [int(x) for x in v.split(".") if x.isdigit()])[-1], "bin")


def start_pg(work):
    """A throwaway PostgreSQL on loopback (run as the postgres user: initdb refuses root)."""
    d, port = os.path.join(work, "pg"), free_port()
    os.makedirs(d)
    shutil.chown(d, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_pg + [f"{pg_bin()}/initdb", "-D", d, "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run(as_pg + [f"{pg_bin()}/pg_ctl", "-D", d, "-l", f"{d}/log", "-w", "start", "-o", f"-p {port} -k {d} -h 127.0.0.1 -c fsync=off"],
                   check=True, capture_output=True)
    return d, as_pg, f"postgres://postgres@127.0.0.1:{port}/postgres"


def stop_pg(d, as_pg):
    subprocess.run(as_pg + [f"{pg_bin()}/pg_ctl", "-D", d, "-m", "fast", "stop"], check=False, capture_output=True)


def node(work, name, db_url, extra=None):
    port = free_port()
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=os.path.join(work, name), WHARF_DATABASE_URL=db_url,
               WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn", **(extra or {}))
    p = spawn([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
    return p, port


def haproxy(work, name, ports):
    port = free_port()
    cfg = os.path.join(work, f"{name}.cfg")
    servers = "\n".join(f"    server n{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
""")
    p = spawn(["haproxy", "-f", cfg], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return p, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    for tool in ("haproxy", "ab", "skopeo"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install haproxy apache2-utils skopeo")
    if not os.path.exists(WHARF):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-cluster-bench-")
    os.chmod(work, 0o755)  # the postgres user reaches its data directory inside
    pg = None
    try:
        pg = start_pg(work)
        a, pa = node(work, "a", pg[2])
        key = open(os.path.join(work, "a", "secret.key")).read().strip()
        b, pb = node(work, "b", pg[2], {"WHARF_SECRET_KEY": key})
        auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

        def call(method, path, doc):
            req = urllib.request.Request(f"http://127.0.0.1:{pa}{path}", method=method, data=json.dumps(doc).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": auth})
            urllib.request.urlopen(req).read()

        shared = os.path.join(work, "shared")
        call("POST", "/service/rest/v1/blobstores/file", {"name": "shared", "path": shared})
        call("POST", "/service/rest/v1/repositories/docker/hosted",
             {"name": "bench", "online": True, "anonymousRead": True, "storage": {"blobStoreName": "shared", "writePolicy": "allow"}, "docker": {}})
        layout = os.path.join(work, "layout")
        make_layout(layout, 2, 1)
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{PASSWORD}", f"oci:{layout}:bench",
                        f"docker://127.0.0.1:{pa}/bench/app:bench"], check=True, capture_output=True)
        time.sleep(1)  # B hears of the repository (well within this)
        path = "/v2/bench/app/manifests/bench"
        hdr = [("Accept", ACCEPT)]
        res = {"A directly": load(f"http://127.0.0.1:{pa}{path}", args.seconds, hdr), "B directly": load(f"http://127.0.0.1:{pb}{path}", args.seconds, hdr)}
        one, p1 = haproxy(work, "lb-one", [pa])
        res["haproxy → A"] = load(f"http://127.0.0.1:{p1}{path}", args.seconds, hdr)
        stop(one)
        two, p2 = haproxy(work, "lb-two", [pa, pb])
        res["haproxy → A, B"] = load(f"http://127.0.0.1:{p2}{path}", args.seconds, hdr)
        stop(two)
    finally:
        stop_all()
        if pg:
            stop_pg(pg[0], pg[1])
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmanifest GET, 32 keep-alive connections, {args.seconds} s each, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    print("| | req/s |")
    print("|---|---:|")
    for k, v in res.items():
        print(f"| {k} | {v:.0f} |")
    ratio = res["haproxy → A, B"] / res["haproxy → A"]
    print(f"\ntwo nodes / one node, both behind haproxy: {ratio:.2f}× (goal ≥ 1.6×: {'met' if ratio >= 1.6 else 'missed'})")


if __name__ == "__main__":
    main()
