//! What the control plane's route tests share: a configuration text loaded and validated into
//! the model, and one route's conditions read back from it.

use std::path::Path;

use strait_control_plane::config::load::{Loaded, load_text};
use strait_control_plane::config::model::{ObjectKey, RouteCondition};
use strait_control_plane::config::validate::build_model;
use strait_control_plane::config::{ConfigErrors, Model};

/// The model of `text` (YAML documents), as the files source builds it; panics if a document
/// does not even load.
pub fn model(text: &str) -> Result<Model, ConfigErrors> {
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut errors = ConfigErrors::default();
    load_text(
        text,
        Path::new("config.yaml"),
        Path::new("/"),
        &mut loaded,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors}");
    build_model(&loaded)
}

/// The conditions of route `kind` `ns/name` for its one parent.
pub fn conditions(model: &Model, kind: &str, ns: &str, name: &str) -> Vec<RouteCondition> {
    let status = &model.route_status[&(kind.to_owned(), ObjectKey::new(ns, name))];
    assert_eq!(status.parents.len(), 1);
    status.parents[0].conditions.clone()
}
