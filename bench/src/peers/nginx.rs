//! nginx as a two-hop mutual-TLS sidecar pair: the configurations of its outbound side
//! (plaintext listeners for the client, TLS 1.3 with a client certificate to the inbound side,
//! pooled upstream connections) and its inbound side (TLS 1.3 listeners that require the
//! client certificate, pooled connections to the backends).
//!
//! One process per side serving everything (`master_process off`, one worker), so its CPU
//! time is one process's, as a one-worker sidecar's would be. HTTP/1.1 and HTTP/2 from the
//! client travel between the sides as HTTP/1.1 (nginx's `proxy_pass` speaks nothing else
//! upstream); gRPC travels as HTTP/2 (`grpc_pass`); TCP through the `stream` module, with
//! half-close passed on (`proxy_half_close`), as the mesh's relay does.

use std::fmt::Write as _;
use std::path::Path;

use super::certs::{PeerCerts, SERVER_NAME};
use super::{Ports, Upstreams};

/// Where Debian's `libnginx-mod-stream` puts the TCP proxy module.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// What both sides share: one worker, logs to stderr, connection reuse without a cap.
fn preamble(out: &mut String, dir: &Path, side: &str) {
    let dir = dir.display();
    let _ = write!(
        out,
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 65536;\n\
         error_log stderr warn;\npid {dir}/nginx-{side}.pid;\nload_module {STREAM_MODULE};\n\
         events {{ worker_connections 20000; }}\n"
    );
}

fn http_common(dir: &Path, side: &str) -> String {
    let dir = dir.display();
    // keepalive_requests: nginx closes a client or upstream connection after 1000 requests
    // by default; the proxies under comparison keep connections for as long as they live.
    format!(
        "  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n\
         \x20 client_body_temp_path {dir}/body-{side};\n  proxy_temp_path {dir}/proxy-{side};\n"
    )
}

/// The client's side: plaintext in, mutual TLS out.
pub fn outbound_config(dir: &Path, listen: &Ports, inbound: &Ports, certs: &PeerCerts) -> String {
    let mut out = String::new();
    preamble(&mut out, dir, "outbound");
    let tls = |prefix: &str| {
        format!(
            "    {prefix}_ssl_certificate {};\n    {prefix}_ssl_certificate_key {};\n\
             \x20   {prefix}_ssl_trusted_certificate {};\n    {prefix}_ssl_verify on;\n\
             \x20   {prefix}_ssl_name {SERVER_NAME};\n    {prefix}_ssl_protocols TLSv1.3;\n\
             \x20   {prefix}_ssl_session_reuse off;\n",
            certs.client_cert.display(),
            certs.client_key.display(),
            certs.ca.display()
        )
    };
    let _ = write!(
        out,
        "http {{\n{common}\
         \x20 upstream inbound_http {{ server 127.0.0.1:{in_http}; keepalive 256; keepalive_requests 1000000; }}\n\
         \x20 upstream inbound_grpc {{ server 127.0.0.1:{in_grpc}; keepalive 256; keepalive_requests 1000000; }}\n\
         \x20 server {{\n    listen 127.0.0.1:{http1};\n    listen 127.0.0.1:{http2} http2;\n\
         \x20   location / {{\n      proxy_pass https://inbound_http;\n      proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n{proxy_tls}    }}\n  }}\n\
         \x20 server {{\n    listen 127.0.0.1:{grpc} http2;\n    location / {{\n      grpc_pass grpcs://inbound_grpc;\n{grpc_tls}    }}\n  }}\n}}\n\
         stream {{\n  server {{\n    listen 127.0.0.1:{tcp};\n    proxy_pass 127.0.0.1:{in_tcp};\n    proxy_half_close on;\n    proxy_ssl on;\n{stream_tls}  }}\n}}\n",
        common = http_common(dir, "outbound"),
        in_http = inbound.http1,
        in_grpc = inbound.grpc,
        in_tcp = inbound.tcp,
        http1 = listen.http1,
        http2 = listen.http2,
        grpc = listen.grpc,
        tcp = listen.tcp,
        proxy_tls = tls("proxy"),
        grpc_tls = tls("grpc"),
        stream_tls = tls("proxy"),
    );
    out
}

/// The backend's side: mutual TLS in (the client certificate required), plaintext to the
/// backends.
pub fn inbound_config(
    dir: &Path,
    listen: &Ports,
    backends: &Upstreams,
    certs: &PeerCerts,
) -> String {
    let mut out = String::new();
    preamble(&mut out, dir, "inbound");
    // No session cache and no tickets: every connection is a full handshake, as between
    // Strait's proxies, which allow no resumption.
    let tls = format!(
        "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_client_certificate {};\n\
         \x20   ssl_verify_client on;\n    ssl_protocols TLSv1.3;\n    ssl_session_cache off;\n\
         \x20   ssl_session_tickets off;\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca.display()
    );
    let _ = write!(
        out,
        "http {{\n{common}\
         \x20 upstream backend_http {{ server {http}; keepalive 256; keepalive_requests 1000000; }}\n\
         \x20 upstream backend_grpc {{ server {grpc}; keepalive 256; keepalive_requests 1000000; }}\n\
         \x20 server {{\n    listen 127.0.0.1:{in_http} ssl;\n{tls}\
         \x20   location / {{\n      proxy_pass http://backend_http;\n      proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n    }}\n  }}\n\
         \x20 server {{\n    listen 127.0.0.1:{in_grpc} ssl http2;\n{tls}\
         \x20   location / {{\n      grpc_pass grpc://backend_grpc;\n    }}\n  }}\n}}\n\
         stream {{\n  server {{\n    listen 127.0.0.1:{in_tcp} ssl;\n{tls}    proxy_pass {tcp};\n    proxy_half_close on;\n  }}\n}}\n",
        common = http_common(dir, "inbound"),
        http = backends.http,
        grpc = backends.grpc,
        tcp = backends.tcp,
        in_http = listen.http1,
        in_grpc = listen.grpc,
        in_tcp = listen.tcp,
    );
    out
}
