# moat: TLS-terminating reverse proxy. Two stages on Debian 12 (bookworm).
#
#   docker build -t moat .
#   docker run -p 8443:8443 -p 8080:8080 \
#       -v "$PWD/moat.yaml:/etc/moat/moat.yaml:ro" -v "$PWD/certs:/etc/moat/certs:ro" moat
#
# The image ships no configuration and no keys: mount them. Relative paths in the
# config resolve against /etc/moat (e.g. certs/server.crt), and files must be
# readable by the user moat (uid 10001).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential meson ninja-build pkg-config \
        libevent-dev libssl-dev libhiredis-dev libyaml-dev libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup build --buildtype=release \
 && ninja -C build moat \
 && strip build/moat

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-core-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 \
        libssl3 libhiredis0.14 libyaml-0-2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin moat \
 && mkdir -p /etc/moat/certs
COPY --from=build /src/build/moat /usr/local/bin/moat
COPY conf/moat.yaml /usr/local/share/moat/moat.yaml.example
WORKDIR /etc/moat
VOLUME ["/etc/moat", "/etc/moat/certs"]
USER moat
EXPOSE 8443 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["moat", "-c", "/etc/moat/moat.yaml"]
