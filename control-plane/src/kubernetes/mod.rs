//! The Kubernetes API as a configuration source: what the control plane reads and writes there.

pub mod rbac;
