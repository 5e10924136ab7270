# syntax=docker/dockerfile:1
# Build: docker build -t bizra-risk .   Run: read-only root filesystem, non-root user; the
# only writable path is /var/lib/bizra (trail files, spool, chain heads, snapshots).
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# The commit signed into every decision's provenance.build (.git is not in the context):
# docker build --build-arg BUILD_COMMIT=$(git rev-parse HEAD) .
ARG BUILD_COMMIT=""
RUN cargo build --release --locked --bin bizra-risk && strip target/release/bizra-risk

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 bizra && useradd --uid 10001 --gid bizra --no-create-home bizra \
    && mkdir -p /var/lib/bizra /etc/bizra && chown bizra:bizra /var/lib/bizra
COPY --from=build /src/target/release/bizra-risk /usr/local/bin/bizra-risk
COPY config/rules.yaml /etc/bizra/rules.yaml
COPY data/binance /usr/share/bizra/data/binance
USER 10001:10001
WORKDIR /var/lib/bizra
ENV BIZRA_ELF__RULES_FILE=/etc/bizra/rules.yaml \
    BIZRA_SINK__DIR=/var/lib/bizra/events \
    BIZRA_KAFKA__SPOOL_DIR=/var/lib/bizra/spool \
    BIZRA_SIGNING__HEADS_FILE=/var/lib/bizra/state/chain_heads.json \
    BIZRA_VAR__SNAPSHOT__DIR=/var/lib/bizra/state \
    BIZRA_HTTP__BIND=0.0.0.0:9464 \
    BIZRA_HTTP__CONTROL_ENABLED=false
# The control plane (/control/) is off in the bare image: it listens on all interfaces, so it
# needs tokens. Mount a tokens file and set BIZRA_HTTP__CONTROL_ENABLED=true and
# BIZRA_HTTP__CONTROL_TOKENS_FILE (deploy/k8s does), see docs/control.md.
EXPOSE 9464
VOLUME ["/var/lib/bizra"]
ENTRYPOINT ["/usr/local/bin/bizra-risk"]
CMD ["run"]
