//! The control plane's YAML configuration loader on arbitrary text: parsing
//! (`config::load::load_text`) and validation (`config::validate::build_model`), as a reload of
//! a configuration directory runs them. Seeded with `examples/local` by `scripts/fuzz`.
//!
//! Asserts: nothing panics, and every error names its file, a 1-based document where it has
//! one, and a non-empty reason, so an operator can find what to fix.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strait_control_plane::config::{ConfigErrors, load, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yaml");
    // Token files are looked up relative to this; it does not exist, so none is read.
    let dir = Path::new("/nonexistent/strait-fuzz");
    let mut loaded = Vec::new();
    let mut errors = ConfigErrors::default();
    load::load_text(text, file, dir, &mut loaded, &mut errors);
    if let Err(more) = validate::build_model(&loaded) {
        errors.0.extend(more.0);
    }
    for error in &errors.0 {
        assert_eq!(error.location.file, file, "{error}");
        assert!(error.location.document.is_none_or(|d| d >= 1), "{error}");
        assert!(!error.reason.is_empty(), "{error}");
        assert!(error.to_string().starts_with("fuzz.yaml"), "{error}");
    }
});
