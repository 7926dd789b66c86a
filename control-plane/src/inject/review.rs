//! One `admission.k8s.io/v1` AdmissionReview in, the answer out: a pure function the HTTPS
//! server calls with the request body.
//!
//! A body that is not a review is the only refusal (HTTP 400, naming what is wrong, so the
//! API server applies the webhook's failurePolicy). Everything else is allowed: a Pod CREATE
//! that asks for the mesh gets the patch, anything else no patch, and the injector's own
//! failures no patch plus an error for the log.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde::Serialize;

use super::config::InjectorConfig;
use super::patch::{HOST_NETWORK_WARNING, Outcome, inject};
use super::skip_event::SkippedPod;

/// The only AdmissionReview version served (the chart's `admissionReviewVersions`).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a review got no AdmissionReview answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not a review the injector can answer (HTTP 400).
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview request: {0}")]
    Bad(String),
    /// The answer could not be encoded: the injector's bug (HTTP 500).
    #[error("encoding the AdmissionReview answer: {0}")]
    Encode(serde_json::Error),
}

/// The answer to one review.
#[derive(Debug)]
pub struct Answer {
    /// The AdmissionReview response, as JSON.
    pub body: Vec<u8>,
    /// The `result` label of `strait_injector_requests_total`.
    pub result: &'static str,
    /// `namespace/name` of the pod (its `generateName` prefix if it has no name yet).
    pub pod: String,
    /// The request's uid.
    pub uid: String,
    /// Warnings returned to the user.
    pub warnings: Vec<String>,
    /// The injector's own failure, when `result` is `error`.
    pub error: Option<String>,
    /// For a hostNetwork pod skipped outside a dry run, the Event to post (`Some(None)`: the
    /// pod offers nothing an Event could regard); `None` otherwise. A dry run posts nothing:
    /// the webhook declares `sideEffects: NoneOnDryRun`.
    pub skip_event: Option<Option<SkippedPod>>,
}

/// The AdmissionReview response. Written by hand rather than with kube's `AdmissionResponse`,
/// which serializes `patch` as an array of numbers (kube-rs issue #1781); the API server
/// expects base64.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResponse<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// Answers the review in `body`. `namespace_enabled`: the webhook that called was the one
/// whose namespaceSelector chose the namespace.
pub fn review(
    body: &[u8],
    namespace_enabled: bool,
    config: &InjectorConfig,
    anchors_pem: &str,
) -> Result<Answer, ReviewError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| match e.path().to_string() {
            path if path == "." => ReviewError::Bad(e.inner().to_string()),
            path => ReviewError::Bad(format!("{path}: {}", e.inner())),
        })?;
    if review.types.api_version != API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(ReviewError::Bad(format!(
            "it is {}/{}; only {API_VERSION} AdmissionReview is served",
            review.types.api_version, review.types.kind
        )));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| ReviewError::Bad("it has no request".into()))?;

    let mut skip_event = None;
    let (outcome, pod_name) = match pod_create(&request)? {
        None => (Ok(Outcome::NotRequested), request_name(&request)),
        Some(object) => {
            let name = object_name(&request, &object);
            let outcome = object
                .try_parse::<Pod>()
                .map_err(|e| format!("the object does not decode as a Pod: {e}"))
                .and_then(|pod| {
                    let outcome = inject(&pod, namespace_enabled, config, anchors_pem)
                        .map_err(|e| e.to_string())?;
                    if outcome == Outcome::HostNetwork && !request.dry_run {
                        // The review's namespace is the API server's; the pod's body may
                        // claim another.
                        let namespace = request.namespace.as_deref().unwrap_or_default();
                        skip_event = Some(SkippedPod::from_pod(namespace, &pod));
                    }
                    Ok(outcome)
                });
            (outcome, name)
        }
    };

    let (patch, warnings, result, error) = match outcome {
        Ok(Outcome::Injected { patch, warnings }) => {
            let patch = serde_json::to_vec(&patch)
                .map_err(|e| format!("encoding the patch: {e}"))
                .map(|json| base64::engine::general_purpose::STANDARD.encode(json));
            match patch {
                Ok(patch) => (Some(patch), warnings, "injected", None),
                Err(error) => (None, warnings, "error", Some(error)),
            }
        }
        Ok(Outcome::HostNetwork) => (
            None,
            vec![HOST_NETWORK_WARNING.to_owned()],
            Outcome::HostNetwork.result(),
            None,
        ),
        Ok(other) => (None, Vec::new(), other.result(), None),
        Err(error) => (None, Vec::new(), "error", Some(error)),
    };
    let response = ReviewResponse {
        api_version: API_VERSION,
        kind: "AdmissionReview",
        response: Response {
            uid: &request.uid,
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &warnings,
        },
    };
    let body = serde_json::to_vec(&response).map_err(ReviewError::Encode)?;
    Ok(Answer {
        body,
        result,
        pod: pod_name,
        uid: request.uid.clone(),
        warnings,
        error,
        skip_event,
    })
}

/// The object of a Pod CREATE; `None` for anything else (which is admitted untouched).
fn pod_create(
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Option<DynamicObject>, ReviewError> {
    let is_pod = request.kind.group.is_empty()
        && request.kind.version == "v1"
        && request.kind.kind == "Pod"
        && request.sub_resource.is_none();
    if !is_pod || !matches!(request.operation, Operation::Create) {
        return Ok(None);
    }
    request
        .object
        .clone()
        .map(Some)
        .ok_or_else(|| ReviewError::Bad("request.object: a Pod CREATE must carry the pod".into()))
}

fn request_name(request: &AdmissionRequest<DynamicObject>) -> String {
    format!(
        "{}/{}",
        request.namespace.as_deref().unwrap_or(""),
        request.name
    )
}

fn object_name(request: &AdmissionRequest<DynamicObject>, object: &DynamicObject) -> String {
    let meta = &object.metadata;
    let name = meta
        .name
        .clone()
        .or_else(|| meta.generate_name.clone())
        .unwrap_or_else(|| request.name.clone());
    let namespace = request
        .namespace
        .clone()
        .or_else(|| meta.namespace.clone())
        .unwrap_or_default();
    format!("{namespace}/{name}")
}
