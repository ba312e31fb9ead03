# moat: TLS-terminating reverse proxy. Two stages on Debian 12 (bookworm).
#
#   docker build -t moat .
#   docker run -p 8443:8443 -p 8080:8080 \
#       -v "$PWD/moat.yaml:/etc/moat/moat.yaml:ro" -v "$PWD/certs:/etc/moat/certs:ro" moat
#
# The image ships no configuration and no keys: mount them. Relative paths in the
# config resolve against /etc/moat (e.g. certs/server.crt), and files must be
# readable by the user moat (uid 10001). The audit log goes to /var/log/moat/audit.log
# unless log.audit says otherwise (stderr suits a container); the access log to stdout.
#
# The runtime libraries are listed once, in conf/runtime-packages.txt; without a Docker
# engine, tests/integration/test_ops_container.py builds this stage's root file system
# with mmdebstrap from that list, runs the RUN steps below that follow the package
# install, and runs moat in it (moat -V, -t, one HTTPS request, --healthcheck).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential meson ninja-build pkg-config \
        libevent-dev libssl-dev libhiredis-dev libyaml-dev libnghttp2-dev libsystemd-dev \
        libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup build --buildtype=release \
 && ninja -C build moat \
 && strip build/moat

FROM debian:bookworm-slim
COPY conf/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $(grep -v -e '^#' -e '^$' /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin moat \
 && mkdir -p /etc/moat/certs \
 && install -d -o moat -g moat -m 0750 /var/log/moat
COPY --from=build /src/build/moat /usr/local/bin/moat
COPY conf/moat.yaml /usr/local/share/moat/moat.yaml.example
WORKDIR /etc/moat
VOLUME ["/etc/moat", "/etc/moat/certs"]
USER moat
EXPOSE 8443 8080
STOPSIGNAL SIGTERM
# GET /readyz on listen.admin (no curl in the image): 0 ready, 1 not ready (the reason in
# `docker inspect`). Needs listen.admin set (the default, 127.0.0.1:9901, will do).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["moat", "--healthcheck", "-c", "/etc/moat/moat.yaml"]
ENTRYPOINT ["moat", "-c", "/etc/moat/moat.yaml"]
