# Images for Kubernetes: `docker build --target proxy -t REGISTRY/strait-proxy:0.1.0 .` and
# `docker build --target control-plane -t REGISTRY/strait-control-plane:0.1.0 .`; point the
# chart's `proxy.image` and `controlPlane.image` at them (docs/kubernetes.md).
#
# One build stage compiles both binaries with the release profile. The proxy image carries
# iptables, because the same image runs the pod's init step (`strait-proxy init`).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p strait-proxy -p strait-control-plane \
    && cp target/release/strait-proxy target/release/strait-control-plane /usr/local/bin/

FROM debian:bookworm-slim AS proxy
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/strait-proxy /usr/local/bin/strait-proxy
# The injector runs the proxy as this UID (and the init step as root, to install rules).
USER 2102:2102
ENTRYPOINT ["/usr/local/bin/strait-proxy"]
CMD ["run"]

FROM debian:bookworm-slim AS control-plane
COPY --from=build /usr/local/bin/strait-control-plane /usr/local/bin/strait-control-plane
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/strait-control-plane"]
CMD ["run", "--config-source", "kubernetes"]
