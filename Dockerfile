# syntax=docker/dockerfile:1
# Build: docker build -t wharf .    Run: docker run -p 8081:8081 -v wharf-data:/data wharf
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin wharf && strip target/release/wharf

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data wharf \
    && mkdir /data && chown wharf /data
COPY --from=build /src/target/release/wharf /usr/local/bin/wharf
COPY config/wharf.toml /etc/wharf/wharf.toml
USER wharf
ENV WHARF_LISTEN=0.0.0.0:8081 WHARF_DATA_DIR=/data
VOLUME /data
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve", "--config", "/etc/wharf/wharf.toml"]
