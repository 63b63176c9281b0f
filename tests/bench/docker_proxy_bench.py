#!/usr/bin/env python3
"""Pull-through benchmark: wharf's Docker proxy against Distribution's own proxy mode, same
upstream (a Distribution registry on loopback), same image, cold and warm, in one run. By hand:

    cargo build --release && python3 tests/bench/docker_proxy_bench.py [--layers 8 --layer-mib 64]

Prints pull times and ratios, the warm pull through wharf's proxy against a pull from a wharf
hosted repository, and how many upstream fetches 32 concurrent cold pulls of one image make per
blob through each proxy.
"""
import argparse, base64, concurrent.futures, json, os, re, shutil, signal, subprocess, tempfile, time, urllib.request
import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("docker_bench", os.path.join(HERE, "docker_bench.py"))
db = importlib.util.module_from_spec(spec); spec.loader.exec_module(db)

AUTH = "admin:bench-password"


def registry(work, name, port, extra=""):
    cfg = os.path.join(work, f"{name}.yml")
    # Level info: Distribution writes its access log only then.
    open(cfg, "w").write(f"version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {work}/{name}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n{extra}")
    log = open(os.path.join(work, f"{name}.access.log"), "w")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log, stderr=subprocess.DEVNULL)
    db.wait_http(f"http://127.0.0.1:{port}/v2/")
    return p


def pull(ref, dest, creds=None):
    args = ["skopeo", "copy", "--src-tls-verify=false"] + (["--src-creds", creds] if creds else []) + [f"docker://{ref}", f"oci:{dest}:x"]
    t = time.time()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(dest, ignore_errors=True)
    return time.time() - t


def upstream_fetches(work, digests):
    log = open(os.path.join(work, "upstream.access.log")).read()
    return {d: len(re.findall(rf'"GET /v2/[^ ]*/blobs/{d} ', log)) for d in digests}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layer-mib", type=int, default=64)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wharf-proxy-bench-")
    big = os.path.join(work, "big"); small = os.path.join(work, "small")
    _, size = db.make_layout(big, args.layers, args.layer_mib)
    big_layers = list(db.LAYERS)
    db.make_layout(small, 2, 16)
    small_reg = list(db.LAYERS)
    small2 = os.path.join(work, "small2")
    db.make_layout(small2, 2, 16)
    small_wharf = list(db.LAYERS)
    up_port, reg_port, w_port = db.free_port(), db.free_port(), db.free_port()
    procs = [registry(work, "upstream", up_port)]
    # One small image per proxy, so each one's upstream fetches can be counted on their own.
    for layout, ref in ((big, "bench/app:big"), (small, "bench/app:small"), (small2, "bench/app:small2")):
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://127.0.0.1:{up_port}/{ref}"], check=True, stdout=subprocess.DEVNULL)
    procs.append(registry(work, "regproxy", reg_port, f"proxy: {{remoteurl: http://127.0.0.1:{up_port}}}\n"))
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{w_port}", WHARF_DATA_DIR=os.path.join(work, "wharf"), WHARF_ADMIN_PASSWORD="bench-password", RUST_LOG="warn")
    w = subprocess.Popen([db.WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(w)
    db.wait_http(f"http://127.0.0.1:{w_port}/service/rest/v1/status")
    req = urllib.request.Request(f"http://127.0.0.1:{w_port}/service/rest/v1/repositories/docker/proxy", method="POST",
        data=json.dumps({"name": "up", "storage": {"blobStoreName": "default"}, "proxy": {"remoteUrl": f"http://127.0.0.1:{up_port}", "metadataMaxAge": 1440}, "docker": {}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()})
    urllib.request.urlopen(req)
    try:
        d = os.path.join(work, "pulled")
        res = {
            "registry cold": pull(f"127.0.0.1:{reg_port}/bench/app:big", d),
            "registry warm": pull(f"127.0.0.1:{reg_port}/bench/app:big", d),
            "wharf cold": pull(f"127.0.0.1:{w_port}/up/bench/app:big", d, AUTH),
            "wharf warm": pull(f"127.0.0.1:{w_port}/up/bench/app:big", d, AUTH),
        }
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", AUTH, f"oci:{big}:bench", f"docker://127.0.0.1:{w_port}/docker-hosted/bench/app:big"], check=True, stdout=subprocess.DEVNULL)
        res["wharf hosted"] = pull(f"127.0.0.1:{w_port}/docker-hosted/bench/app:big", d, AUTH)

        def burst(ref, creds):
            with concurrent.futures.ThreadPoolExecutor(args.clients) as ex:
                t = time.time()
                list(ex.map(lambda i: pull(ref, os.path.join(work, f"c{i}"), creds), range(args.clients)))
                return time.time() - t
        t_reg = burst(f"127.0.0.1:{reg_port}/bench/app:small", None)
        t_wharf = burst(f"127.0.0.1:{w_port}/up/bench/app:small2", AUTH)
        reg_f = list(upstream_fetches(work, small_reg).values())
        wharf_f = list(upstream_fetches(work, small_wharf).values())
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM); p.wait()
        shutil.rmtree(work, ignore_errors=True)
    mb = size / 1e6
    print(f"image: {args.layers} layers, {size / 2**20:.0f} MiB")
    print(f"{'':34}{'wharf':>10}{'registry':>10}{'ratio':>8}")
    for k in ("cold", "warm"):
        w_s, r_s = res[f"wharf {k}"], res[f"registry {k}"]
        print(f"{'pull through proxy, ' + k + ', MB/s':34}{mb / w_s:10.1f}{mb / r_s:10.1f}{r_s / w_s:8.2f}")
    print(f"{'wharf warm proxy vs hosted, MB/s':34}{mb / res['wharf warm']:10.1f}{mb / res['wharf hosted']:10.1f}{res['wharf hosted'] / res['wharf warm']:8.2f}  (second column: hosted)")
    print(f"{args.clients} concurrent cold pulls (2 x 16 MiB): wharf {t_wharf:.1f} s, {wharf_f} upstream fetches per layer; registry {t_reg:.1f} s, {reg_f} upstream fetches per layer")


if __name__ == "__main__":
    main()
