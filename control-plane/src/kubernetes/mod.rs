//! Kubernetes: the configuration source that watches the API server (Services,
//! EndpointSlices, meshed Pods, Gateway API routes and Strait's own kinds) and feeds the same
//! validated model as the YAML files, the TokenReview check behind `Identity.Certify`, and the CA
//! kept in a Secret of the control plane's namespace, the injector webhook's caBundle, and the
//! routes' `status.parents[]`.

pub mod ca_secret;
pub mod kinds;
pub mod owner;
pub mod rbac;
pub mod route_status;
pub mod source;
pub mod status_writer;
pub mod token_review;
pub mod translate;
pub mod webhook_ca_bundle;
