//! HAProxy as a two-hop mutual-TLS sidecar pair: the configurations of its outbound side
//! (plaintext frontends for the client, TLS 1.3 with a client certificate to the inbound side)
//! and its inbound side (TLS 1.3 frontends that require the client certificate).
//!
//! One thread per side (`nbthread 1`). Each protocol keeps its own shape between the sides,
//! as an operator would configure HAProxy for it: HTTP/1.1 as HTTP/1.1, HTTP/2 and gRPC as
//! HTTP/2 (ALPN `h2`), TCP in `mode tcp`. Idle server connections are shared between client
//! connections (`http-reuse always`), the setting HAProxy's docs recommend for throughput.

use std::fmt::Write as _;

use super::certs::{PeerCerts, SERVER_NAME};
use super::{Ports, Upstreams};

fn global(out: &mut String) {
    // maxconn: two descriptors per proxied connection must fit the benchmark's open-file
    // limit (HAProxy refuses to start otherwise); 8 000 is far above what any scenario opens.
    // No TLS session cache, no tickets, no client-side reuse: every connection between the
    // sides is a full handshake, as between Strait's proxies, which allow no resumption.
    let _ = write!(
        out,
        "global\n  nbthread 1\n  maxconn 8000\n  tune.ssl.cachesize 0\n\
         \x20 ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets\n\
         \x20 ssl-default-server-options ssl-min-ver TLSv1.3 no-tls-tickets\n\
         defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout http-keep-alive 60s\n  timeout tunnel 1h\n  http-reuse always\n"
    );
}

/// The client's side: plaintext in, mutual TLS out.
pub fn outbound_config(listen: &Ports, inbound: &Ports, certs: &PeerCerts) -> String {
    let mut out = String::new();
    global(&mut out);
    let tls = format!(
        "ssl verify required ca-file {} crt {} verifyhost {SERVER_NAME} sni str({SERVER_NAME}) no-ssl-reuse",
        certs.ca.display(),
        certs.client_bundle.display()
    );
    let _ = write!(
        out,
        "frontend http1\n  mode http\n  bind 127.0.0.1:{http1}\n  default_backend inbound_http1\n\
         frontend http2\n  mode http\n  bind 127.0.0.1:{http2} proto h2\n  default_backend inbound_http2\n\
         frontend grpc\n  mode http\n  bind 127.0.0.1:{grpc} proto h2\n  default_backend inbound_grpc\n\
         frontend tcp\n  mode tcp\n  bind 127.0.0.1:{tcp}\n  default_backend inbound_tcp\n\
         backend inbound_http1\n  mode http\n  server inbound 127.0.0.1:{in_http1} {tls} alpn http/1.1\n\
         backend inbound_http2\n  mode http\n  server inbound 127.0.0.1:{in_http2} {tls} alpn h2\n\
         backend inbound_grpc\n  mode http\n  server inbound 127.0.0.1:{in_grpc} {tls} alpn h2\n\
         backend inbound_tcp\n  mode tcp\n  server inbound 127.0.0.1:{in_tcp} {tls}\n",
        http1 = listen.http1,
        http2 = listen.http2,
        grpc = listen.grpc,
        tcp = listen.tcp,
        in_http1 = inbound.http1,
        in_http2 = inbound.http2,
        in_grpc = inbound.grpc,
        in_tcp = inbound.tcp,
    );
    out
}

/// The backend's side: mutual TLS in (the client certificate required), plaintext to the
/// backends (HTTP/2 with prior knowledge where the client's side spoke HTTP/2).
pub fn inbound_config(listen: &Ports, backends: &Upstreams, certs: &PeerCerts) -> String {
    let mut out = String::new();
    global(&mut out);
    let tls = format!(
        "ssl crt {} ca-file {} verify required",
        certs.server_bundle.display(),
        certs.ca.display()
    );
    let _ = write!(
        out,
        "frontend http1\n  mode http\n  bind 127.0.0.1:{in_http1} {tls} alpn http/1.1\n  default_backend http1\n\
         frontend http2\n  mode http\n  bind 127.0.0.1:{in_http2} {tls} alpn h2\n  default_backend http2\n\
         frontend grpc\n  mode http\n  bind 127.0.0.1:{in_grpc} {tls} alpn h2\n  default_backend grpc\n\
         frontend tcp\n  mode tcp\n  bind 127.0.0.1:{in_tcp} {tls}\n  default_backend tcp\n\
         backend http1\n  mode http\n  server app {http}\n\
         backend http2\n  mode http\n  server app {http} proto h2\n\
         backend grpc\n  mode http\n  server app {grpc} proto h2\n\
         backend tcp\n  mode tcp\n  server app {tcp}\n",
        in_http1 = listen.http1,
        in_http2 = listen.http2,
        in_grpc = listen.grpc,
        in_tcp = listen.tcp,
        http = backends.http,
        grpc = backends.grpc,
        tcp = backends.tcp,
    );
    out
}
