//! Reads a configuration directory: every `*.yaml` / `*.yml` file, every document in it,
//! parsed into the typed raw kinds of [`super::raw`].
//!
//! YAML is parsed with serde-saphyr (see ARCHITECTURE.md for why), into a neutral value
//! first, so each document's `kind` picks its type and a type error can be reported with its
//! field path (serde_path_to_error) instead of stopping the whole file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors, Location};
use super::raw::{Document, TypeMeta};

/// A parsed document and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// Where the document is.
    pub location: Location,
    /// The document.
    pub document: Document,
    /// For a Workload whose `spec.bootstrapToken` names a `file` (and no `sha256`): what that
    /// file (relative to the configuration directory) holds, read here so that validation
    /// does no I/O.
    pub bootstrap_token_file: Option<TokenFile>,
}

/// A bootstrap token file as loading found it: the token's SHA-256 digest, or why it cannot be
/// used (unreadable, empty), naming the path.
pub type TokenFile = Result<[u8; 32], String>;

/// The files a configuration directory holds, in a stable order.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every document of every file in `dir`. Documents with errors are left out and their
/// errors collected, so one pass reports everything.
pub fn load_dir(dir: &Path) -> (Vec<Loaded>, ConfigErrors) {
    let mut parsed = ParsedFiles::default();
    parsed.refresh(dir);
    parsed.into_parts()
}

/// Each configuration file's documents as last parsed, so that a reload parses again only the
/// files whose text changed. Parsing YAML is most of what a reload costs: with 5 000
/// workloads spread over a few files, a one-line route change used to re-parse them all.
///
/// A file is known by the SHA-256 of its text (its text is not kept); token files that
/// Workloads name are read again at every refresh, since they change without their YAML.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    /// By path, which keeps the directory's stable order.
    files: BTreeMap<PathBuf, ParsedFile>,
    /// An error reading the directory itself.
    listing: ConfigErrors,
}

#[derive(Debug)]
struct ParsedFile {
    /// SHA-256 of the text parsed; `None` when the file could not be read.
    digest: Option<[u8; 32]>,
    loaded: Vec<Loaded>,
    errors: ConfigErrors,
}

impl ParsedFiles {
    /// Brings the cache up to date with `dir`: parses files that are new or whose text
    /// changed, forgets files that are gone, and reads token files again.
    pub fn refresh(&mut self, dir: &Path) {
        self.listing = ConfigErrors::default();
        let paths = match files(dir) {
            Ok(paths) => paths,
            Err(e) => {
                self.files.clear();
                let location = Location {
                    file: dir.to_owned(),
                    ..Default::default()
                };
                let reason = format!("cannot read the configuration directory: {e}");
                self.listing.push(&location, "", reason);
                return;
            }
        };
        let present: std::collections::BTreeSet<&PathBuf> = paths.iter().collect();
        self.files.retain(|path, _| present.contains(path));
        for path in paths {
            let display = path.strip_prefix(dir).unwrap_or(&path).to_owned();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    let location = Location {
                        file: display,
                        ..Default::default()
                    };
                    let mut errors = ConfigErrors::default();
                    errors.push(&location, "", format!("cannot read the file: {e}"));
                    let file = ParsedFile {
                        digest: None,
                        loaded: Vec::new(),
                        errors,
                    };
                    self.files.insert(path, file);
                    continue;
                }
            };
            let digest = crate::digest::sha256(text.as_bytes());
            match self.files.get_mut(&path) {
                Some(file) if file.digest == Some(digest) => {
                    for loaded in &mut file.loaded {
                        loaded.bootstrap_token_file = read_token_file(&loaded.document, dir);
                    }
                }
                _ => {
                    let mut loaded = Vec::new();
                    let mut errors = ConfigErrors::default();
                    load_text(&text, &display, dir, &mut loaded, &mut errors);
                    let file = ParsedFile {
                        digest: Some(digest),
                        loaded,
                        errors,
                    };
                    self.files.insert(path, file);
                }
            }
        }
    }

    /// Every document loaded, file by file in the directory's order.
    pub fn loaded(&self) -> impl Iterator<Item = &Loaded> {
        self.files.values().flat_map(|file| &file.loaded)
    }

    /// Every error found loading, file by file.
    pub fn errors(&self) -> ConfigErrors {
        let files = self.files.values().flat_map(|file| &file.errors.0);
        ConfigErrors(self.listing.0.iter().chain(files).cloned().collect())
    }

    fn into_parts(self) -> (Vec<Loaded>, ConfigErrors) {
        let errors = self.errors();
        let loaded = self.files.into_values().flat_map(|file| file.loaded);
        (loaded.collect(), errors)
    }
}

/// Parses the documents of one file's text.
pub fn load_text(
    text: &str,
    file: &Path,
    dir: &Path,
    loaded: &mut Vec<Loaded>,
    errors: &mut ConfigErrors,
) {
    let file_location = Location {
        file: file.to_owned(),
        ..Default::default()
    };
    let documents: Vec<serde_json::Value> = match serde_saphyr::from_multiple(text) {
        Ok(documents) => documents,
        Err(e) => {
            errors.push(&file_location, "", format!("invalid YAML: {e}"));
            return;
        }
    };
    for (index, value) in documents.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let location = Location {
            file: file.to_owned(),
            document: Some(index + 1),
            object: None,
        };
        match document(value, location, dir) {
            Ok(document) => loaded.push(document),
            Err(error) => errors.0.push(error),
        }
    }
}

/// Parses one document (a YAML document, or an object from the Kubernetes API) found at
/// `location`; the error names the document and the field.
pub fn document(
    value: serde_json::Value,
    mut location: Location,
    dir: &Path,
) -> Result<Loaded, ConfigError> {
    if !value.is_object() {
        return Err(ConfigError {
            location,
            field: String::new(),
            reason: "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
        });
    }
    let meta: TypeMeta = serde_json::from_value(value.clone()).unwrap_or(TypeMeta {
        api_version: None,
        kind: None,
        metadata: None,
    });
    location.object = Some(describe(&meta));
    match parse_document(&meta, value) {
        Ok(document) => Ok(Loaded {
            bootstrap_token_file: read_token_file(&document, dir),
            location,
            document,
        }),
        Err((field, reason)) => Err(ConfigError {
            location,
            field,
            reason,
        }),
    }
}

/// Reads the token file a Workload names (only when it names no digest instead: a document
/// that sets both is refused by validation without reading anything).
fn read_token_file(document: &Document, dir: &Path) -> Option<TokenFile> {
    let Document::Workload(workload) = document else {
        return None;
    };
    let token = workload.spec.bootstrap_token.as_ref()?;
    let (Some(file), None) = (&token.file, &token.sha256) else {
        return None;
    };
    let path = dir.join(file);
    Some(match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(crate::digest::sha256(text.trim().as_bytes())),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    })
}

/// `Kind namespace/name` as far as the document says.
fn describe(meta: &TypeMeta) -> String {
    let text = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let kind = meta.kind.clone().unwrap_or_else(|| "<no kind>".into());
    let (namespace, name) = match &meta.metadata {
        Some(m) => (text(&m.namespace), text(&m.name)),
        None => (String::new(), String::new()),
    };
    match (namespace.as_str(), name.as_str()) {
        (_, "") => kind,
        ("", name) => format!("{kind} {name}"),
        (namespace, name) => format!("{kind} {namespace}/{name}"),
    }
}

const GATEWAY: &str = "gateway.networking.k8s.io/v1";
const GATEWAY_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";
const STRAIT: &str = "strait.dev/v1alpha1";

fn parse_document(meta: &TypeMeta, value: serde_json::Value) -> Result<Document, (String, String)> {
    let (Some(api_version), Some(kind)) = (meta.api_version.as_deref(), meta.kind.as_deref())
    else {
        let missing = if meta.api_version.is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        return Err((missing.into(), "required field is missing".into()));
    };
    let expected = match kind {
        "Service" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "HTTPRoute" | "GRPCRoute" => GATEWAY,
        // Served as v1 since Gateway API v1.5, and as v1beta1 before and alongside.
        "ReferenceGrant" if api_version == GATEWAY_V1BETA1 => GATEWAY_V1BETA1,
        "ReferenceGrant" => GATEWAY,
        "Workload" | "BackendPolicy" | "AuthorizationPolicy" | "MeshConfig" => STRAIT,
        other => {
            return Err((
                "kind".into(),
                format!(
                    "unknown kind {other:?}; expected one of Service, EndpointSlice, Workload, HTTPRoute, GRPCRoute, ReferenceGrant, BackendPolicy, AuthorizationPolicy, MeshConfig"
                ),
            ));
        }
    };
    if api_version != expected {
        return Err((
            "apiVersion".into(),
            format!("{kind} is served as {expected:?}, not {api_version:?}"),
        ));
    }
    Ok(match kind {
        "Service" => Document::Service(typed(value)?),
        "EndpointSlice" => Document::EndpointSlice(typed(value)?),
        "Workload" => Document::Workload(typed(value)?),
        "HTTPRoute" => Document::HttpRoute(typed(value)?),
        "GRPCRoute" => Document::GrpcRoute(typed(value)?),
        "ReferenceGrant" => Document::ReferenceGrant(typed(value)?),
        "BackendPolicy" => Document::BackendPolicy(typed(value)?),
        "AuthorizationPolicy" => Document::AuthorizationPolicy(typed(value)?),
        _ => Document::MeshConfig(typed(value)?),
    })
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::build_model;

    const WORKLOAD: &str = "apiVersion: strait.dev/v1alpha1
kind: Workload
metadata: {name: web-1, namespace: demo}
spec:
  address: 127.0.0.1
  bootstrapToken: {file: web.token}
";

    /// A fresh directory of its own under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strait-load-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        dir
    }

    #[test]
    fn a_token_file_is_read_when_loading_so_validation_needs_no_disk() {
        let dir = scratch("token");
        std::fs::write(dir.join("web.token"), "s3cret\n").unwrap();
        let mut loaded = Vec::new();
        let mut errors = ConfigErrors::default();
        load_text(
            WORKLOAD,
            Path::new("w.yaml"),
            &dir,
            &mut loaded,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors}");
        // Gone before validation: the digest travelled with the document.
        std::fs::remove_dir_all(&dir).unwrap();
        let model = build_model(&loaded).expect("valid");
        let workload = model.workloads.values().next().unwrap();
        assert_eq!(
            workload.token_sha256,
            Some(crate::digest::sha256(b"s3cret"))
        );
    }

    #[test]
    fn an_unreadable_or_empty_token_file_is_an_error_naming_the_path() {
        let dir = scratch("empty");
        std::fs::write(dir.join("web.token"), " \n").unwrap();
        let mut loaded = Vec::new();
        let mut errors = ConfigErrors::default();
        load_text(
            WORKLOAD,
            Path::new("w.yaml"),
            &dir,
            &mut loaded,
            &mut errors,
        );
        load_text(
            &WORKLOAD
                .replace("web-1", "web-2")
                .replace("web.token", "missing.token"),
            Path::new("x.yaml"),
            &dir,
            &mut loaded,
            &mut errors,
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let errors = build_model(&loaded).unwrap_err().to_string();
        assert!(errors.contains("spec.bootstrapToken.file: "), "{errors}");
        assert!(errors.contains("web.token is empty"), "{errors}");
        assert!(errors.contains("missing.token: No such file"), "{errors}");
    }

    /// The address of each document `parsed` holds, to tell a reused parse from a new one.
    fn addresses(parsed: &ParsedFiles) -> Vec<*const Document> {
        parsed.loaded().map(|l| &l.document as *const _).collect()
    }

    /// [`WORKLOAD`] named `name`, at `127.0.0.N`.
    fn workload(name: &str, n: u8) -> String {
        WORKLOAD
            .replace("web-1", name)
            .replace("127.0.0.1", &format!("127.0.0.{n}"))
    }

    fn workload_names(parsed: &ParsedFiles) -> Vec<String> {
        let model = build_model(parsed.loaded()).expect("valid");
        model.workloads.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_refresh_parses_again_only_the_files_whose_text_changed_and_forgets_removed_ones() {
        let dir = scratch("refresh");
        std::fs::write(dir.join("web.token"), "one\n").unwrap();
        std::fs::write(dir.join("a.yaml"), WORKLOAD).unwrap();
        std::fs::write(dir.join("b.yaml"), workload("web-2", 2)).unwrap();
        let mut parsed = ParsedFiles::default();
        parsed.refresh(&dir);
        assert!(parsed.errors().is_empty(), "{}", parsed.errors());
        let first = addresses(&parsed);
        assert_eq!(workload_names(&parsed), ["demo/web-1", "demo/web-2"]);

        // Nothing changed: both files' documents are the ones parsed before.
        parsed.refresh(&dir);
        assert_eq!(addresses(&parsed), first);

        // b.yaml changed: only it is parsed again, and the model sees its new text.
        std::fs::write(dir.join("b.yaml"), workload("web-3", 3)).unwrap();
        parsed.refresh(&dir);
        let second = addresses(&parsed);
        assert_eq!(second[0], first[0], "a.yaml was parsed again");
        assert_eq!(workload_names(&parsed), ["demo/web-1", "demo/web-3"]);

        // A token file changes without its YAML: the reused documents carry the new digest.
        std::fs::write(dir.join("web.token"), "two\n").unwrap();
        parsed.refresh(&dir);
        assert_eq!(addresses(&parsed), second);
        let model = build_model(parsed.loaded()).expect("valid");
        for workload in model.workloads.values() {
            assert_eq!(workload.token_sha256, Some(crate::digest::sha256(b"two")));
        }

        // A removed file's documents are gone; a file turned invalid reports its error and
        // keeps none of its old documents.
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: [unclosed").unwrap();
        parsed.refresh(&dir);
        assert_eq!(parsed.loaded().count(), 0);
        let errors = parsed.errors().to_string();
        assert!(
            errors.contains("a.yaml") && errors.contains("invalid YAML"),
            "{errors}"
        );

        // The directory itself gone: one error naming it, no documents, however many
        // refreshes (the reload loop refreshes at every poll).
        std::fs::remove_dir_all(&dir).unwrap();
        for _ in 0..3 {
            parsed.refresh(&dir);
            assert_eq!(parsed.loaded().count(), 0);
            let errors = parsed.errors();
            assert_eq!(errors.0.len(), 1, "{errors}");
            let errors = errors.to_string();
            assert!(
                errors.contains("cannot read the configuration directory"),
                "{errors}"
            );
        }
    }
}
