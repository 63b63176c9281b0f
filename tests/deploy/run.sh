#!/usr/bin/env bash
# The deployment as a user meets it (issue 13), opt-in: not part of tests/run.sh, because a
# release build inside a container takes longer than CI's budget allows.
#
#   bash tests/deploy/run.sh            (as root, with podman; installs what is missing)
#
# 1. Builds the image from the Dockerfile with podman.
# 2. deploy/compose.yaml with podman-compose: two nodes, PostgreSQL, SeaweedFS, haproxy. Reads
#    the admin password the documented way; pushes an image with skopeo through the balancer and
#    another straight to one node, pulls both through each node; uploads a wheel with twine and
#    downloads it with pip through each node; publishes an npm package and reads it through each.
# 3. The documented backup (pg_dump, the bucket with the AWS CLI), then `down -v` (every
#    container and volume gone), the documented restore, and the same content checked again.
# 4. deploy/k8s with `podman kube play` (no Kubernetes here): the reference PostgreSQL and
#    SeaweedFS, the wharf Deployment from the edited Secret; a push to one pod, a pull from the
#    other. The manifests are also checked against Kubernetes' schemas (kubernetes-validate).
#
# Images come from Docker Hub where it is reachable (pull them first); where it is not, local
# stand-ins are built under the same names (tests/deploy/standins.sh). Every container, pod,
# network, volume and secret this script makes is removed when it exits, even on failure;
# images are kept, so a second run builds only what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
START=$SECONDS
PROJECT=wharfdeploy$$
WORK=$(mktemp -d /tmp/wharf-deploy.XXXXXX)
TOOLS=$ROOT/target/deploy
mkdir -p "$TOOLS"
phase() { echo "== $* ($((SECONDS - START)) s)"; }
die() { echo "FAILED: $*" >&2; exit 1; }

need=()
command -v podman >/dev/null || need+=(podman)
command -v skopeo >/dev/null || need+=(skopeo)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v npm >/dev/null || need+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# Compose services find each other by name: on podman's CNI backend that takes the dnsname plugin.
[ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
# podman kube play builds its pods' pause image around catatonit.
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x "$TOOLS/venv/bin/podman-compose" ] || [ ! -x "$TOOLS/venv/bin/aws" ] || [ ! -x "$TOOLS/venv/bin/twine" ] \
    || [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]; then
    echo "== installing podman-compose, awscli, twine and kubernetes-validate into $TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check podman-compose awscli twine kubernetes-validate
fi
export PATH="$TOOLS/venv/bin:$PATH"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
S3_PORT=$(free_port)
LB=127.0.0.1:$PORT
compose() { podman-compose -p "$PROJECT" -f deploy/compose.yaml --env-file "$WORK/env" "$@"; }
# What the Kubernetes phase made, for the cleanup.
K8S_NET="" K8S_PLAYED=() K8S_VOLUMES=() K8S_SECRET=""

cleanup() {
    local rc=$?
    set +e
    if [ -f "$WORK/env" ]; then compose down -v -t 5 >/dev/null 2>&1; fi
    # Whatever `down` missed (a start that failed halfway): everything labelled with the project.
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f >/dev/null 2>&1
    podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1
    podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null 2>&1
    local f
    for f in "${K8S_PLAYED[@]}"; do podman kube down "$f" >/dev/null 2>&1; done
    for f in "${K8S_VOLUMES[@]}"; do podman volume rm -f "$f" >/dev/null 2>&1; done
    [ -n "$K8S_SECRET" ] && podman secret rm "$K8S_SECRET" >/dev/null 2>&1
    [ -n "$K8S_NET" ] && podman network rm -f "$K8S_NET" >/dev/null 2>&1
    rm -rf "$WORK"
    local left
    left=$(podman ps -a --format '{{.Names}}' | grep -E "^$PROJECT|^wharf-(postgres|s3)|^wharf-pod" || true)
    if [ -n "$left" ]; then echo "left behind: $left" >&2; rc=1; fi
    if [ $rc -eq 0 ]; then echo "== passed in $((SECONDS - START)) s"; else echo "== FAILED after $((SECONDS - START)) s" >&2; fi
    exit $rc
}
trap cleanup EXIT

phase "base images"
bash tests/deploy/standins.sh "$TOOLS/standins"
# Where crun cannot run containers (cgroups v1 and v2 mixed) or podman may not raise the
# container's limits to its defaults, runc with the limits this shell has.
if ! podman run --rm docker.io/library/debian:bookworm-slim true >/dev/null 2>&1; then
    cat >"$TOOLS/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
    export CONTAINERS_CONF="$TOOLS/containers.conf"
    command -v runc >/dev/null || { apt-get update -qq && apt-get install -y -qq runc >/dev/null; }
    podman run --rm docker.io/library/debian:bookworm-slim true || die "podman cannot run a container here"
fi

phase "image build (podman build -t wharf .)"
t=$SECONDS
# --network host: the builder reaches crates.io the way this host does.
nice -n 10 podman build -q --network host -t wharf . >/dev/null
BUILD_SECS=$((SECONDS - t))
echo "   built in $BUILD_SECS s"

phase "compose: start"
cat >"$WORK/env" <<EOF
POSTGRES_PASSWORD=$(openssl rand -hex 16)
WHARF_SECRET_KEY=$(openssl rand -base64 32)
S3_ACCESS_KEY_ID=wharf
S3_SECRET_ACCESS_KEY=$(openssl rand -hex 20)
WHARF_PORT=$PORT
S3_PORT=$S3_PORT
EOF
set -a; . "$WORK/env"; set +a
# podman 4.3 now and then refuses to start a container whose `requires` chain holds one that is
# restarting ("... not found in input list"): the nodes restart until PostgreSQL answers, since
# podman 4.3 does not wait for `service_healthy`. A second `up` starts what is missing.
up() {
    local try
    for try in 1 2 3; do
        compose up -d "$@" >>"$WORK/up.log" 2>&1 && return 0
        echo "   compose up failed (try $try); again" >&2
        sleep 3
    done
    cat "$WORK/up.log"; die "compose up $*"
}
up

# A node's address on the compose network: the balancer picks a node per request, so the test
# also talks to each node directly to know which one served what.
node_addr() {
    local id
    id=$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1")
    echo "$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id"):8081"
}
wait_status() { # URL [SECONDS]
    local deadline=$((SECONDS + ${2:-120}))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/service/rest/v1/status")" = 200 ]; do
        (( SECONDS < deadline )) || die "$1 did not answer"
        sleep 1
    done
}
wait_status "http://$LB" 180
A=$(node_addr wharf-a); B=$(node_addr wharf-b)
wait_status "http://$A" 60; wait_status "http://$B" 60
echo "   balancer $LB, nodes $A and $B"
podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" --filter label=com.docker.compose.service=wharf-a)" | grep -qx true \
    || die "wharf-a's root filesystem is not read-only"

phase "compose: the admin password, as docs/deploy.md reads it"
PW=$(compose exec -T wharf-a cat /data/admin.password 2>/dev/null || compose exec -T wharf-b cat /data/admin.password)
[ -n "$PW" ] || die "no admin password"
curl -sf -o /dev/null -u "admin:$PW" "http://$LB/service/rest/v1/repositories" || die "admin password refused"

phase "compose: docker push and pull"
CREDS="admin:$PW"
# A real image: the base of wharf's own, from podman's store.
skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" containers-storage:docker.io/library/debian:bookworm-slim \
    "docker://$LB/docker-hosted/deploy/debian:via-lb"
skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" containers-storage:localhost/wharf:latest \
    "docker://$A/docker-hosted/deploy/wharf:via-a"
digest() { skopeo inspect --tls-verify=false --creds "$CREDS" --format '{{.Digest}}' "docker://$1"; }
pull_all() { # checks every tag through every node, blobs verified by skopeo against their digests
    local where tag
    for where in "$LB" "$A" "$B"; do
        for tag in debian:via-lb wharf:via-a; do
            rm -rf "$WORK/pulled"
            skopeo copy -q --src-tls-verify=false --src-creds "$CREDS" "docker://$where/docker-hosted/deploy/$tag" "oci:$WORK/pulled:x"
            [ "$(digest "$where/docker-hosted/deploy/$tag")" = "$(cat "$WORK/digest-$tag")" ] || die "$tag through $where: another digest"
        done
    done
}
digest "$A/docker-hosted/deploy/debian:via-lb" >"$WORK/digest-debian:via-lb"
digest "$B/docker-hosted/deploy/wharf:via-a" >"$WORK/digest-wharf:via-a"
pull_all

phase "compose: PyPI and npm (published through the balancer, read through each node)"
python3 - "$WORK/dist" <<'EOF'
import base64, hashlib, os, sys, zipfile
out = sys.argv[1]; os.makedirs(out)
files = {"wharfdeploy/__init__.py": b"VALUE = 42\n",
         "wharfdeploy-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: wharfdeploy\nVersion: 1.0\n",
         "wharfdeploy-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n" for n, d in files.items())
files["wharfdeploy-1.0.dist-info/RECORD"] = (record + "wharfdeploy-1.0.dist-info/RECORD,,\n").encode()
with zipfile.ZipFile(f"{out}/wharfdeploy-1.0-py3-none-any.whl", "w") as z:
    for n, d in files.items():
        z.writestr(n, d)
EOF
WHEEL_SHA=$(sha256sum "$WORK/dist/wharfdeploy-1.0-py3-none-any.whl" | cut -d' ' -f1)
twine upload --disable-progress-bar -u admin -p "$PW" --repository-url "http://$LB/repository/pypi-hosted/" "$WORK/dist/"*.whl >/dev/null
mkdir -p "$WORK/npm"
cat >"$WORK/npm/package.json" <<'EOF'
{"name": "wharf-deploy-check", "version": "1.0.0", "description": "deploy test", "main": "index.js"}
EOF
echo 'module.exports = 42;' >"$WORK/npm/index.js"
printf '//%s/repository/npm-hosted/:_auth=%s\n' "$LB" "$(printf 'admin:%s' "$PW" | base64 -w0)" >"$WORK/npm/.npmrc"
(cd "$WORK/npm" && npm publish --userconfig "$WORK/npm/.npmrc" --registry "http://$LB/repository/npm-hosted/" >/dev/null 2>&1) || die "npm publish"
check_packages() {
    local where
    for where in "$A" "$B" "$LB"; do
        rm -rf "$WORK/dl"
        pip download -q --disable-pip-version-check --no-cache-dir --no-deps -d "$WORK/dl" --trusted-host "${where%%:*}" \
            --index-url "http://admin:$PW@$where/repository/pypi-hosted/simple/" wharfdeploy==1.0
        [ "$(sha256sum "$WORK/dl/"*.whl | cut -d' ' -f1)" = "$WHEEL_SHA" ] || die "the wheel through $where differs"
        curl -sf -u "admin:$PW" "http://$where/repository/npm-hosted/wharf-deploy-check" | grep -q '"1.0.0"' || die "npm package through $where"
    done
}
check_packages

phase "compose: backup (docs/deploy.md)"
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
mkdir -p "$WORK/backup"
compose exec -T postgres pg_dump -U wharf -Fc wharf >"$WORK/backup/wharf.dump"
aws --endpoint-url "http://127.0.0.1:$S3_PORT" s3 sync --only-show-errors s3://wharf "$WORK/backup/bucket"
echo "   dump $(du -h "$WORK/backup/wharf.dump" | cut -f1), bucket $(du -sh "$WORK/backup/bucket" | cut -f1)"

phase "compose: wipe (down -v)"
compose down -v -t 10 >/dev/null 2>&1
[ -z "$(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT")" ] || die "volumes left after down -v"

phase "compose: restore (docs/deploy.md)"
up postgres seaweedfs
deadline=$((SECONDS + 60))
until compose exec -T postgres pg_isready -q -U wharf -d wharf 2>/dev/null \
    && aws --endpoint-url "http://127.0.0.1:$S3_PORT" s3 ls s3://wharf >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "postgres or seaweedfs did not come up"
    sleep 1
done
compose exec -T postgres pg_restore -U wharf -d wharf --no-owner <"$WORK/backup/wharf.dump"
aws --endpoint-url "http://127.0.0.1:$S3_PORT" s3 sync --only-show-errors "$WORK/backup/bucket" s3://wharf
up
wait_status "http://$LB" 120
A=$(node_addr wharf-a); B=$(node_addr wharf-b)
wait_status "http://$A" 60; wait_status "http://$B" 60
curl -sf -o /dev/null -u "admin:$PW" "http://$LB/service/rest/v1/repositories" || die "the admin password of before the backup is refused"
pull_all
check_packages
compose down -v -t 10 >/dev/null 2>&1
COMPOSE_SECS=$((SECONDS - START))

phase "kubernetes: schemas"
kubernetes-validate --strict --quiet deploy/k8s/{secret,postgres,seaweedfs,wharf}.yaml
kubectl kustomize deploy/k8s >/dev/null

phase "kubernetes: podman kube play"
for v in wharf-postgres wharf-s3; do
    podman volume exists "$v" && die "a volume named $v exists already; not touching it"
done
# The Secret as a user edits it.
K8S_PW=$(openssl rand -hex 16) K8S_S3=$(openssl rand -hex 20) K8S_ADMIN=$(openssl rand -hex 12)
sed -e "s|secret-key: CHANGE-ME|secret-key: $(openssl rand -base64 32)|" \
    -e "s|admin-password: CHANGE-ME|admin-password: $K8S_ADMIN|" \
    -e "s|postgres-password: CHANGE-ME|postgres-password: $K8S_PW|" \
    -e "s|wharf:CHANGE-ME@|wharf:$K8S_PW@|" \
    -e "s|s3-access-key-id: CHANGE-ME|s3-access-key-id: wharf|" \
    -e "s|s3-secret-access-key: CHANGE-ME|s3-secret-access-key: $K8S_S3|" deploy/k8s/secret.yaml >"$WORK/secret.yaml"
! grep -v '^ *#' "$WORK/secret.yaml" | grep -q CHANGE-ME || die "secret.yaml has a CHANGE-ME the edit missed"
# podman 4.3 plays no Secret objects: its secretKeyRef reads a podman secret holding the
# Secret's `data` as JSON (base64 values), which is what the API server makes of stringData.
python3 - "$WORK/secret.yaml" >"$WORK/secret.json" <<'PY'
import base64, json, sys
data, on = {}, False
for line in open(sys.argv[1]):
    if line.startswith("stringData:"):
        on = True
    elif on and line.startswith("  ") and not line.strip().startswith("#") and ":" in line:
        k, v = line.strip().split(":", 1)
        data[k] = base64.b64encode(v.strip().encode()).decode()
print(json.dumps(data))
PY
K8S_SECRET=wharf
podman secret create "$K8S_SECRET" "$WORK/secret.json" >/dev/null
# No Services either: a network alias stands in for each Service name the manifests use.
K8S_NET=${PROJECT}k8s
podman network create "$K8S_NET" >/dev/null
K8S_VOLUMES=(wharf-postgres wharf-s3)
K8S_PLAYED+=(deploy/k8s/postgres.yaml)
podman kube play --network "$K8S_NET:alias=wharf-postgres" deploy/k8s/postgres.yaml >/dev/null
K8S_PLAYED+=(deploy/k8s/seaweedfs.yaml)
podman kube play --network "$K8S_NET:alias=wharf-s3" deploy/k8s/seaweedfs.yaml >/dev/null
# podman 4.3 publishes every containerPort on the host (Kubernetes does not), so the two replicas
# would both bind port 8081 here: its copy of wharf.yaml leaves out the container's `ports`
# list, which nothing else in the file refers to.
python3 - deploy/k8s/wharf.yaml >"$WORK/wharf.yaml" <<'PY'
import sys
lines, out, skip = open(sys.argv[1]).read().split("\n"), [], None
for line in lines:
    indent = len(line) - len(line.lstrip())
    if skip is not None and (not line.strip() or indent > skip or line.lstrip().startswith("- ") and indent == skip):
        continue
    skip = None
    if line.strip() == "ports:" and indent == 10:
        skip = indent
        continue
    out.append(line)
print("\n".join(out))
PY
grep -q containerPort "$WORK/wharf.yaml" && die "the copy of wharf.yaml still has a containerPort"
K8S_PLAYED+=("$WORK/wharf.yaml")
podman kube play --network "$K8S_NET" "$WORK/wharf.yaml" >/dev/null
pods=$(podman pod ps -q --filter label=app.kubernetes.io/name=wharf 2>/dev/null || true)
[ -n "$pods" ] || pods=$(podman pod ps --format '{{.Name}}' | grep '^wharf-pod')
addrs=()
for p in $pods; do
    infra=$(podman pod inspect -f '{{.InfraContainerID}}' "$p")
    addrs+=("$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$infra"):8081")
done
echo "   wharf pods: ${addrs[*]}"
for a in "${addrs[@]}"; do wait_status "http://$a" 120; done
K8S_CREDS="admin:$K8S_ADMIN"
skopeo copy -q --dest-tls-verify=false --dest-creds "$K8S_CREDS" containers-storage:docker.io/library/debian:bookworm-slim \
    "docker://${addrs[0]}/docker-hosted/k8s/debian:1"
for a in "${addrs[@]}"; do
    rm -rf "$WORK/pulled"
    skopeo copy -q --src-tls-verify=false --src-creds "$K8S_CREDS" "docker://$a/docker-hosted/k8s/debian:1" "oci:$WORK/pulled:x"
done
ro=$(for p in $pods; do podman ps -q --filter "pod=$p" --filter ancestor=localhost/wharf:latest; done | xargs -r podman inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}')
[ "$(echo "$ro" | sort -u)" = "true 10001:10001" ] && [ "$(echo "$ro" | wc -l)" = "${#addrs[@]}" ] \
    || die "wharf's containers should run read-only as 10001:10001, one per pod: $ro"

echo "   image build $BUILD_SECS s; build and compose phases $COMPOSE_SECS s; all $((SECONDS - START)) s"
