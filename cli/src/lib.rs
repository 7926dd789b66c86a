//! The `strait` operator CLI as a library: its command line, the checks, statistics and
//! summaries it prints, also used by `strait-demo` for its live table.

pub mod args;
pub mod check;
pub mod http_get;
pub mod proxy_config;
pub mod render;
pub mod stat;
pub mod target;
