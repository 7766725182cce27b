# intake's production image. Build: `docker build -t intake .`; run: see README → Run it.

# The toolchain matches `rust-version` in Cargo.toml (a test checks it).
FROM rust:1.95.0-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# A recipe of the dependency graph only: it changes when Cargo.toml/Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies build in their own layer, cached until the recipe changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Queries are checked against the committed .sqlx/ data: no database at build time.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin intake

FROM debian:12-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 intake \
    && useradd --system --uid 10001 --gid intake --no-create-home --shell /usr/sbin/nologin intake \
    && mkdir /data \
    && chown 10001:10001 /data
WORKDIR /app
COPY --from=builder /app/target/release/intake /usr/local/bin/intake
ENV APP_ENVIRONMENT=production
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["intake", "healthcheck"]
ENTRYPOINT ["intake"]
CMD ["serve"]
