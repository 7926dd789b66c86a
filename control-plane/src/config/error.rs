//! Configuration errors a user can act on: each names the file, the document (its index and
//! `kind namespace/name`), the field path and the reason.

use std::fmt;
use std::path::PathBuf;

/// Where in the configuration an error is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file, relative to the configuration directory when possible.
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file; `None` for file-level errors.
    pub document: Option<usize>,
    /// `Kind namespace/name`, as far as it could be read.
    pub object: Option<String>,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where.
    pub location: Location,
    /// The field path (`spec.rules[0].backendRefs[1].weight`); empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location.file.display())?;
        if let Some(document) = self.location.document {
            write!(f, ": document {document}")?;
        }
        if let Some(object) = &self.location.object {
            write!(f, " ({object})")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every error found in one pass over the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} configuration error{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// Adds an error.
    pub fn push(
        &mut self,
        location: &Location,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.0.push(ConfigError {
            location: location.clone(),
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
