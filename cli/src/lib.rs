//! The `strait` operator CLI as a library: the checks, statistics and summaries it prints,
//! also used by `strait-demo` for its live table.

pub mod check;
pub mod http_get;
pub mod proxy_config;
pub mod render;
pub mod stat;
