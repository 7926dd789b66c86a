//! The integration suites, one module per behaviour area, linked into one test binary
//! (see `autotests = false` in Cargo.toml). Select one with nextest, e.g.
//! `cargo nextest run --workspace -E 'test(/^mtls::/)'`.

mod attacks;
mod attacks_admin;
mod attacks_admin_flood;
mod attacks_certify;
mod attacks_certify_flood;
mod attacks_control_plane_flood;
mod attacks_dual_stack;
mod attacks_endpoint_slices;
mod attacks_identity;
mod attacks_matchers;
mod authorization;
mod bad_input;
mod chaos;
mod chart;
mod cli;
mod configuration;
mod demo;
mod discovery;
mod discovery_fanout;
mod documented_defaults;
mod grpc_proxying;
mod http_proxying;
mod identity;
mod injector;
mod iptables_redirect;
mod kubernetes_source;
mod limits;
mod memory_budget;
mod mtls;
mod pod_interception;
mod rotation;
mod shutdown;
mod soak;
mod telemetry;
mod traffic;
mod upgrades_and_tcp;
