# syntax=docker/dockerfile:1
# Build: docker build -t wharf .    Run: docker run -p 8081:8081 -v wharf-data:/data wharf
# A cluster (PostgreSQL, S3, several nodes): docs/deploy.md.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep crates.io downloads and compiled dependencies between builds, so a
# source change recompiles wharf's own crates, not every dependency. The copied sources keep
# their modification times, which can be older than the cached build (another checkout, an
# unpacked release): touched, they are always rebuilt, never taken for the cached ones. The
# binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find . -path ./target -prune -o -type f -exec touch {} + \
    && cargo build --release --locked --bin wharf \
    && cp target/release/wharf /usr/local/bin/wharf && strip /usr/local/bin/wharf

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 wharf \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin wharf \
    && mkdir /data && chown wharf /data
COPY --from=build /usr/local/bin/wharf /usr/local/bin/wharf
COPY config/wharf.toml /etc/wharf/wharf.toml
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENV WHARF_LISTEN=0.0.0.0:8081 WHARF_DATA_DIR=/data
VOLUME /data
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve", "--config", "/etc/wharf/wharf.toml"]
