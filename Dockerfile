# syntax=docker/dockerfile:1.7
#
# demo-app container image: static binaries on `scratch`: /demo-app (the
# service, the default entrypoint) and /devops-agent-demo (the project CLI,
# whose `aws worker` the investigator's ECS service runs from this same image).
#
#   docker build -t demo-app:$(git rev-parse HEAD) \
#     --build-arg GIT_SHA=$(git rev-parse HEAD) --build-arg VERSION=0.1.0 .
#
# Without a Docker daemon, scripts/build-image.sh builds the same final stage
# with cargo + buildah (and checks it). The final stage has no shell, no
# package manager and no libc: only the two binaries, run as an unprivileged user.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------- builder
FROM rust:${RUST_VERSION}-slim-bookworm AS builder

ARG TARGET=x86_64-unknown-linux-musl
WORKDIR /src

# The musl target links a fully static binary (musl's libc is bundled with
# the Rust target). The CLI's AWS SDK uses rustls on ring, which compiles C:
# musl-tools gives it a musl C compiler.
# hadolint ignore=DL3008
RUN rustup target add "${TARGET}" \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*

COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY config ./config

# Dependency caching: the registry and the target directory live in BuildKit
# cache mounts, so a source change recompiles only the workspace crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p demo-app -p devops-agent-demo --target "${TARGET}" \
 && install -D -m 0555 "target/${TARGET}/release/demo-app" /out/demo-app \
 && install -D -m 0555 "target/${TARGET}/release/devops-agent-demo" /out/devops-agent-demo

# ---------------------------------------------------------------- runtime
FROM scratch

ARG GIT_SHA=unknown
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="demo-app" \
      org.opencontainers.image.description="Instrumented demo service for the DevOps agent demo" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE_URL}"

# Owned by root and read-only: the process cannot rewrite its own binary.
COPY --from=builder /out/demo-app /demo-app
COPY --from=builder /out/devops-agent-demo /devops-agent-demo

ENV PORT=3000 \
    APP_VERSION=${VERSION} \
    GIT_SHA=${GIT_SHA}

# Numeric uid:gid: scratch has no /etc/passwd to resolve a name.
USER 10001:10001
EXPOSE 3000

# Probes http://127.0.0.1:$PORT/health; exit 0 healthy, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/demo-app", "healthcheck"]

ENTRYPOINT ["/demo-app"]
