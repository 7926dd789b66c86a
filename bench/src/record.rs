//! Writes a run down: `<out-dir>/<day>-<commit>[-<kind>].{md,json}` (a counter is added
//! rather than overwrite an earlier run of the same day and commit) and a dated section
//! appended to the history file, so earlier runs stay visible next to new ones.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::settings::Output;

/// One run to record.
pub struct Record<'a> {
    /// `2026-12-02`.
    pub day: &'a str,
    /// `2026-12-02 07:41 UTC`.
    pub minute: &'a str,
    /// The commit measured.
    pub commit: &'a str,
    /// `""` for the comparison, `"soak"` for a soak.
    pub kind: &'a str,
    /// The heading of the history section.
    pub title: &'a str,
    /// The markdown body.
    pub markdown: &'a str,
    /// The JSON document.
    pub json: &'a serde_json::Value,
}

fn free_stem(dir: &Path, stem: &str) -> String {
    let taken =
        |s: &str| dir.join(format!("{s}.json")).exists() || dir.join(format!("{s}.md")).exists();
    if !taken(stem) {
        return stem.to_owned();
    }
    (2..)
        .map(|n| format!("{stem}-{n}"))
        .find(|s| !taken(s))
        .expect("some counter is free")
}

/// Writes the files and appends the history section; returns the files written.
pub fn write(output: &Output, record: &Record<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let dir = &output.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = match record.kind {
        "" => format!("{}-{}", record.day, record.commit),
        kind => format!("{}-{}-{kind}", record.day, record.commit),
    };
    let stem = free_stem(dir, &stem);
    let md = dir.join(format!("{stem}.md"));
    let json = dir.join(format!("{stem}.json"));
    let document = format!(
        "# {} ({})\n\n{}",
        record.title, record.minute, record.markdown
    );
    std::fs::write(&md, document).with_context(|| format!("writing {}", md.display()))?;
    let text = serde_json::to_string_pretty(record.json).context("encoding the results")?;
    std::fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    let relative = |p: &Path| {
        output
            .history
            .parent()
            .and_then(|base| p.strip_prefix(base).ok())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let section = format!(
        "\n## {} — {} — `{}`\n\nFiles: [{}]({}), [{}]({})\n\n{}",
        record.minute,
        record.title,
        record.commit,
        relative(&md),
        relative(&md),
        relative(&json),
        relative(&json),
        record.markdown
    );
    let mut history = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output.history)
        .with_context(|| format!("opening {}", output.history.display()))?;
    history
        .write_all(section.as_bytes())
        .with_context(|| format!("appending to {}", output.history.display()))?;
    Ok(vec![md, json, output.history.clone()])
}
