#!/usr/bin/env python3
"""Side-by-side benchmark: wharf against verdaccio on this machine, in one run. Run by hand,
never in CI:

    cargo build --release
    bash tests/run.sh   # once, or install target/test-npm as it does (verdaccio)
    python3 tests/bench/npm_bench.py [--packages 30 --seconds 8]

It publishes one demo set (an application that depends on N libraries, each with a few hundred
KiB of files) to a verdaccio and to a wharf hosted registry, and measures for each:
  - packument requests per second at 32 concurrent keep-alive clients (ab -k), abbreviated form
    as `npm install` asks for it: anonymous, and with a token;
  - at 64 clients: wharf with a token against verdaccio anonymous (its best case);
  - a cold `npm install` of the application (empty cache, fresh project; best of 5).
"""
import argparse, base64, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
VERDACCIO = os.path.join(ROOT, "target/test-npm/node_modules/.bin/verdaccio")
PASSWORD = "bench-password"
ABBREV = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"








def npmrc(path, registry, token):
    host_path = registry[len("http:"):]
    with open(path, "w") as f:
        f.write(f"registry={registry}\n{host_path}:_authToken={token}\n")


def npm(args, cwd, rc, cache):
    env = dict(os.environ, npm_config_userconfig=rc, npm_config_cache=cache, npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    subprocess.run(["npm", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def demo_set(work, n):
    dirs = []
    libs = [f"bench-lib-{i}" for i in range(n)]
    for i, lib in enumerate(libs):
        d = os.path.join(work, "src", lib)
        os.makedirs(d)
        json.dump({"name": lib, "version": "1.0.0", "main": "index.js"}, open(os.path.join(d, "package.json"), "w"))
        open(os.path.join(d, "index.js"), "w").write(f"module.exports = {lib!r};\n")
        open(os.path.join(d, "data.bin"), "wb").write(os.urandom(64 * 1024 * (1 + i % 8)))
        dirs.append(d)
    d = os.path.join(work, "src", "bench-app")
    os.makedirs(d)
    json.dump({"name": "bench-app", "version": "1.0.0", "main": "index.js", "dependencies": {l: "^1.0.0" for l in libs}}, open(os.path.join(d, "package.json"), "w"))
    open(os.path.join(d, "index.js"), "w").write("module.exports = 'app';\n")
    dirs.append(d)
    return dirs


def publish_all(dirs, registry, token, work):
    rc = os.path.join(work, f"publish-{time.time_ns()}.npmrc")
    npmrc(rc, registry, token)
    for d in dirs:
        npm(["publish"], d, rc, os.path.join(work, "publish-cache"))


def cold_install(registry, token, work, runs=5):
    best = None
    for _ in range(runs):
        p = os.path.join(work, f"project-{time.time_ns()}")
        os.makedirs(p)
        json.dump({"name": "consumer", "version": "1.0.0", "private": True}, open(os.path.join(p, "package.json"), "w"))
        rc = os.path.join(p, ".bench-npmrc")
        npmrc(rc, registry, token)
        t = time.time()
        npm(["install", "--prefer-online", "bench-app"], p, rc, os.path.join(p, "cache"))
        took = time.time() - t
        best = took if best is None else min(best, took)
        shutil.rmtree(p, ignore_errors=True)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=8)
    args = ap.parse_args()
    for tool in ("ab", "npm"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    for f in (WHARF, VERDACCIO):
        if not os.path.exists(f):
            raise SystemExit(f"{f} is missing (see this file's docstring)")
    work = tempfile.mkdtemp(prefix="wharf-npm-bench-")
    dirs = demo_set(work, args.packages)
    res = {}

    # verdaccio, with a user so that the token row is a real token.
    vport = free_port()
    vdir = os.path.join(work, "verdaccio")
    os.makedirs(vdir)
    open(os.path.join(vdir, "config.yaml"), "w").write(
        f"storage: {vdir}/storage\nauth:\n  htpasswd:\n    file: {vdir}/htpasswd\n    max_users: 100\nuplinks: {{}}\n"
        "packages:\n  '**':\n    access: $all\n    publish: $authenticated\nmax_body_size: 100mb\nlog: {type: stdout, format: json, level: warn}\n")
    v = subprocess.Popen([VERDACCIO, "--config", f"{vdir}/config.yaml", "--listen", f"127.0.0.1:{vport}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vbase = f"http://127.0.0.1:{vport}/"
    wait_http(f"{vbase}-/ping")
    req = urllib.request.Request(f"{vbase}-/user/org.couchdb.user:bench", method="PUT", data=json.dumps({"name": "bench", "password": PASSWORD}).encode(), headers={"Content-Type": "application/json"})
    vtoken = json.load(urllib.request.urlopen(req))["token"]
    publish_all(dirs, vbase, vtoken, work)
    res["verdaccio"] = {
        "rps": load(f"{vbase}bench-lib-0", args.seconds, [("Accept", ABBREV)]),
        "rps_token": load(f"{vbase}bench-lib-0", args.seconds, [("Accept", ABBREV), ("Authorization", f"Bearer {vtoken}")]),
        # Its best case: anonymous (with the token it checks a password on every request).
        "rps_64": load(f"{vbase}bench-lib-0", args.seconds, [("Accept", ABBREV)], clients=64),
        "install_s": cold_install(vbase, vtoken, work),
    }
    v.send_signal(signal.SIGTERM); v.wait()

    # wharf
    port = free_port()
    data = os.path.join(work, "wharf-data")
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=data, WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    w = subprocess.Popen([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/service/rest/v1/status")
    auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(f"{base}/service/rest/v1/repositories/npm/hosted", method="POST",
                                 data=json.dumps({"name": "bench", "anonymousRead": True, "storage": {"blobStoreName": "default"}}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": auth})
    urllib.request.urlopen(req)
    reg = f"{base}/repository/bench/"
    req = urllib.request.Request(f"{reg}-/user/org.couchdb.user:admin", method="PUT", data=json.dumps({"name": "admin", "password": PASSWORD}).encode(), headers={"Content-Type": "application/json"})
    wtoken = json.load(urllib.request.urlopen(req))["token"]
    publish_all(dirs, reg, wtoken, work)
    res["wharf"] = {
        "rps": load(f"{reg}bench-lib-0", args.seconds, [("Accept", ABBREV)]),
        "rps_token": load(f"{reg}bench-lib-0", args.seconds, [("Accept", ABBREV), ("Authorization", f"Bearer {wtoken}")]),
        "rps_64": load(f"{reg}bench-lib-0", args.seconds, [("Accept", ABBREV), ("Authorization", f"Bearer {wtoken}")], clients=64),
        "install_s": cold_install(reg, wtoken, work),
    }
    w.send_signal(signal.SIGTERM); w.wait()
    shutil.rmtree(work, ignore_errors=True)

    wr, vr = res["wharf"], res["verdaccio"]
    print(f"\n{'':36}{'wharf':>12}{'verdaccio':>12}{'ratio':>8}")
    print(f"{'packument req/s (c=32), anonymous':36}{wr['rps']:12.1f}{vr['rps']:12.1f}{wr['rps'] / vr['rps']:8.2f}")
    print(f"{'packument req/s (c=32), token':36}{wr['rps_token']:12.1f}{vr['rps_token']:12.1f}{wr['rps_token'] / vr['rps_token']:8.2f}")
    print(f"{'c=64, wharf token / verdaccio anon.':36}{wr['rps_64']:12.1f}{vr['rps_64']:12.1f}{wr['rps_64'] / vr['rps_64']:8.2f}")
    print(f"{'cold npm install, s (best of 5)':36}{wr['install_s']:12.2f}{vr['install_s']:12.2f}{vr['install_s'] / wr['install_s']:8.2f}")


if __name__ == "__main__":
    main()
