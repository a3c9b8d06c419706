# The container images of the Todo platform: one build target per image.
#
#   docker build --target todo-service -t todo-platform/todo-service:0.1.0 .
#   minikube image build -t todo-platform/todo-service:0.1.0 --build-opt target=todo-service .
#
# Targets: todo-service, audit-service, websocket-service, notification-service,
# recurring-task-service (the services, named as their Dapr app ids) and
# todo-admin (the operator console). Always name one: without --target the
# last stage (todo-admin) is built.
#
# BINARIES picks where the binaries come from:
#   source    (default) compiled here, in the Rust builder stage below;
#   prebuilt  copied from target/release/ of the build context, for a machine
#             that built them already (`cargo build --release --workspace`);
#             strip their line tables first (`objcopy --strip-debug`) or each
#             image carries about 80 MB of them.
#
# Every image: Debian 12 slim, the binary in /usr/local/bin, uid/gid 10001,
# nothing written outside /tmp (a read-only root filesystem is fine),
# configured only through the environment and mounted secrets (through the
# Dapr sidecar's secret store), SIGTERM for a graceful stop. The migrations
# are compiled into each service (sqlx::migrate!) and applied at start-up;
# db/ is also in /usr/share/todo-platform/db for reference.

ARG BINARIES=source

# ---- binaries compiled from source -----------------------------------------
FROM docker.io/library/rust:1.95-slim-bookworm AS binaries-source
WORKDIR /src
COPY . .
# Queries are checked against the committed offline data (.sqlx/), no
# database; symbols stay (names in backtraces), line tables go (80 MB each).
# The console without the `local-stack` feature: it takes TODO_ADMIN_TOKEN.
ENV SQLX_OFFLINE=true \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked --no-default-features \
        -p todo-service -p audit-service -p websocket-service \
        -p notification-service -p recurring-task-service -p admin-tui \
    && mkdir /out \
    && cp target/release/todo-service target/release/audit-service \
          target/release/websocket-service target/release/notification-service \
          target/release/recurring-task-service target/release/todo-admin /out/

# ---- binaries built beforehand, from the build context ---------------------
FROM scratch AS binaries-prebuilt
COPY target/release/todo-service target/release/audit-service \
     target/release/websocket-service target/release/notification-service \
     target/release/recurring-task-service target/release/todo-admin /out/

# A stage picked by a build argument (hadolint takes it for an image name).
# hadolint ignore=DL3006
FROM binaries-${BINARIES} AS binaries

# ---- what every image shares -----------------------------------------------
FROM docker.io/library/debian:bookworm-slim AS runtime
# The user every process runs as; no home, no login shell.
RUN groupadd --system --gid 10001 todo \
    && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin todo
COPY db/ /usr/share/todo-platform/db/
LABEL org.opencontainers.image.vendor="todo-platform" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /tmp
USER 10001:10001
# Listen on the pod's address (the kubelet's probes, the Service), not only on
# loopback as on a development machine.
ENV APP_LISTEN_ADDRESS=0.0.0.0
STOPSIGNAL SIGTERM

# ---- the services: APP_PORT as in the README; HEALTHCHECK is the binary's
# own `health` subcommand (GET /health on loopback), so no curl or shell ----
FROM runtime AS todo-service
COPY --from=binaries /out/todo-service /usr/local/bin/todo-service
ENV APP_PORT=8001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/todo-service", "health"]
ENTRYPOINT ["/usr/local/bin/todo-service"]

FROM runtime AS audit-service
COPY --from=binaries /out/audit-service /usr/local/bin/audit-service
ENV APP_PORT=8002
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/audit-service", "health"]
ENTRYPOINT ["/usr/local/bin/audit-service"]

FROM runtime AS websocket-service
COPY --from=binaries /out/websocket-service /usr/local/bin/websocket-service
ENV APP_PORT=8003
EXPOSE 8003
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/websocket-service", "health"]
ENTRYPOINT ["/usr/local/bin/websocket-service"]

FROM runtime AS notification-service
COPY --from=binaries /out/notification-service /usr/local/bin/notification-service
ENV APP_PORT=8004
EXPOSE 8004
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/notification-service", "health"]
ENTRYPOINT ["/usr/local/bin/notification-service"]

FROM runtime AS recurring-task-service
COPY --from=binaries /out/recurring-task-service /usr/local/bin/recurring-task-service
ENV APP_PORT=8005
EXPOSE 8005
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/recurring-task-service", "health"]
ENTRYPOINT ["/usr/local/bin/recurring-task-service"]

# ---- the operator console: interactive, run with a terminal (-it) ----------
FROM runtime AS todo-admin
COPY --from=binaries /out/todo-admin /usr/local/bin/todo-admin
ENV TERM=xterm-256color
ENTRYPOINT ["/usr/local/bin/todo-admin"]
