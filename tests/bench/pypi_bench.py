#!/usr/bin/env python3
"""Side-by-side benchmark: wharf against pypiserver on this machine, in one run. Run by hand,
never in CI:

    cargo build --release
    target/test-venv/bin/pip install pypiserver waitress twine   # tests/run.sh makes the venv
    PATH=$PWD/target/test-venv/bin:$PATH python3 tests/bench/pypi_bench.py [--projects 30]

It builds a demo set (one application that depends on N libraries, each a wheel and an sdist),
serves it from pypiserver (its "auto" server, which is waitress when installed) and from a
wharf hosted repository (uploaded with twine), and measures for each:
  - project-page (simple index) requests per second at 32 concurrent keep-alive clients (ab -k),
    anonymous; and at 64 with Basic credentials (which pypiserver, serving to anyone, ignores);
  - a cold `pip install --no-cache-dir` of the application and its dependencies (best of 7);
and, for wharf only, a 100 MB wheel upload with twine: peak RSS before and after (flat memory
means the upload does not grow the process by anything near 100 MB).
"""
import argparse, base64, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, rss_kb, load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
MAKE_DIST = os.path.join(ROOT, "tests/pypi/make_dist.py")
PASSWORD = "bench-password"
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()










def demo_set(out, n, payload_kib):
    """The application and its libraries; with `payload_kib`, library i carries
    payload_kib * (1 + i % 8) KiB, so sizes spread like a real dependency tree's."""
    libs = [f"bench-lib-{i}" for i in range(n)]
    for i, lib in enumerate(libs):
        env = dict(os.environ, WHARF_DIST_PAYLOAD=str(payload_kib * 1024 * (1 + i % 8)))
        subprocess.run([sys.executable, MAKE_DIST, out, lib, "1.0"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run([sys.executable, MAKE_DIST, out, "bench-app", "1.0", *libs], check=True, stdout=subprocess.DEVNULL)
    return sorted(os.path.join(out, f) for f in os.listdir(out))


def cold_install(index, work, runs=7):
    best = None
    for i in range(runs):
        target = os.path.join(work, f"site-{time.time_ns()}")
        t = time.time()
        subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check", "--no-cache-dir",
                        "--index-url", index, "--target", target, "bench-app"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        took = time.time() - t
        best = took if best is None else min(best, took)
        shutil.rmtree(target, ignore_errors=True)
    return best


def big_wheel(out):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "bench_big-1.0-py3-none-any.whl")
    import zipfile
    meta = "Metadata-Version: 2.1\nName: bench-big\nVersion: 1.0\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("bench_big-1.0.dist-info/METADATA", meta)
        z.writestr("bench_big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("bench_big/data.bin", os.urandom(100 * 10**6))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--payload-kib", type=int, default=0, help="library i's wheel carries payload-kib * (1 + i %% 8) KiB of data")
    args = ap.parse_args()
    for tool in ("ab", "pypi-server", "twine"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (see this file's docstring)")
    if not os.path.exists(WHARF):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-pypi-bench-")
    pkgs = os.path.join(work, "pkgs")
    files = demo_set(pkgs, args.projects, args.payload_kib)
    total = sum(os.path.getsize(f) for f in files)
    print(f"demo set: bench-app and {args.projects} libraries, {len(files)} files, {total / 2**20:.1f} MiB", flush=True)
    res = {}

    # pypiserver
    port = free_port()
    ps = subprocess.Popen(["pypi-server", "run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".", "--disable-fallback", pkgs],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/simple/")
    base = f"http://127.0.0.1:{port}"
    res["pypiserver"] = {
        "page_rps": load(f"{base}/simple/bench-lib-0/", args.seconds),
        # pypiserver serves this set to anyone and ignores credentials: its best case.
        "page_rps_64": load(f"{base}/simple/bench-lib-0/", args.seconds, [("Authorization", AUTH)], clients=64),
        "install_s": cold_install(f"{base}/simple/", work),
    }
    ps.send_signal(signal.SIGTERM); ps.wait()

    # wharf
    port = free_port()
    data = os.path.join(work, "wharf-data")
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=data, WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    w = subprocess.Popen([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/service/rest/v1/status")
    req = urllib.request.Request(f"{base}/service/rest/v1/repositories/pypi/hosted", method="POST",
                                 data=json.dumps({"name": "bench", "anonymousRead": True, "storage": {"blobStoreName": "default"}}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": AUTH})
    urllib.request.urlopen(req)
    subprocess.run(["twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", f"{base}/repository/bench/",
                    "-u", "admin", "-p", PASSWORD, *files], check=True, stdout=subprocess.DEVNULL)
    res["wharf"] = {
        "page_rps": load(f"{base}/repository/bench/simple/bench-lib-0/", args.seconds),
        "install_s": cold_install(f"{base}/repository/bench/simple/", work),
    }
    res["wharf"]["page_rps_64"] = load(f"{base}/repository/bench/simple/bench-lib-0/", args.seconds, [("Authorization", AUTH)], clients=64)
    before = rss_kb(w.pid, "VmHWM")
    big = big_wheel(os.path.join(work, "big"))
    t = time.time()
    subprocess.run(["twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", f"{base}/repository/bench/",
                    "-u", "admin", "-p", PASSWORD, big], check=True, stdout=subprocess.DEVNULL)
    upload_s = time.time() - t
    after = rss_kb(w.pid, "VmHWM")
    w.send_signal(signal.SIGTERM); w.wait()
    shutil.rmtree(work, ignore_errors=True)

    wr, pr = res["wharf"], res["pypiserver"]
    print(f"\n{'':34}{'wharf':>12}{'pypiserver':>12}{'ratio':>8}")
    print(f"{'project page req/s (c=32)':34}{wr['page_rps']:12.1f}{pr['page_rps']:12.1f}{wr['page_rps'] / pr['page_rps']:8.2f}")
    print(f"{'cold pip install, s (best of 7)':34}{wr['install_s']:12.2f}{pr['install_s']:12.2f}{pr['install_s'] / wr['install_s']:8.2f}")
    print(f"{'page req/s (c=64), Basic auth':34}{wr['page_rps_64']:12.1f}{pr['page_rps_64']:12.1f}{wr['page_rps_64'] / pr['page_rps_64']:8.2f}")
    print(f"\nwharf, 100 MB wheel upload (twine): {upload_s:.1f} s; peak RSS {before / 1024:.1f} MB before, {after / 1024:.1f} MB after")


if __name__ == "__main__":
    main()
