//! Configuration: YAML documents in a directory (local mode) → typed raw kinds → the
//! validated [`model::Model`] every snapshot is computed from.
//!
//! Errors name the file, the document (index and `kind namespace/name`), the field path and
//! the reason, and a whole directory is checked in one pass.

pub mod duration;
pub mod error;
pub mod load;
pub mod model;
pub mod raw;
pub mod slices;
pub mod status_lines;
pub mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::Model;

/// Loads and validates every YAML file in `dir`.
///
/// ```no_run
/// let model = strait_control_plane::config::load(std::path::Path::new("examples/local"))?;
/// println!("{} services", model.services.len());
/// # Ok::<(), strait_control_plane::config::ConfigErrors>(())
/// ```
pub fn load(dir: &Path) -> Result<Model, ConfigErrors> {
    load_with(dir, &mut load::ParsedFiles::default())
}

/// [`load`], parsing again only the files whose text changed since `parsed` last saw them
/// (a hot reload's path).
pub fn load_with(dir: &Path, parsed: &mut load::ParsedFiles) -> Result<Model, ConfigErrors> {
    parsed.refresh(dir);
    let mut errors = parsed.errors();
    match validate::build_model(parsed.loaded()) {
        Ok(model) if errors.is_empty() => {
            warn_refused_rules(&model);
            Ok(model)
        }
        Ok(_) => Err(errors),
        Err(more) => {
            errors.0.extend(more.0);
            Err(errors)
        }
    }
}

/// Logs each route rule the model holds refused (for its filters): the rest of the
/// configuration is in force, so this is a warning, not an error.
pub fn warn_refused_rules(model: &Model) {
    for refused in &model.refused_rules {
        tracing::warn!(rule = %refused, "route rule refused; the route's other rules apply");
    }
}
