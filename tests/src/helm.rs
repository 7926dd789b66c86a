//! The real `helm` (v4) for the chart tests: found through `STRAIT_HELM`, or where
//! `scripts/fetch-helm` caches it (`target/tools/helm/helm`). Without it a test skips with a
//! message, except on CI (`CI=true`), where a missing helm is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_owned()
}

/// The chart under test.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/strait")
}

/// A helm binary.
pub struct Helm {
    path: PathBuf,
}

/// What a helm command printed.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Helm {
    /// The helm to test with, or `None` (after saying why) when there is none outside CI.
    pub fn find(test: &str) -> Option<Self> {
        let path = std::env::var_os("STRAIT_HELM")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/tools/helm/helm"));
        if path.is_file() {
            return Some(Self { path });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: helm is missing at {}; scripts/setup-test-tools fetches it (scripts/fetch-helm) and CI must run the chart tests",
            path.display()
        );
        eprintln!(
            "SKIPPED {test}: no helm at {} (run scripts/fetch-helm, or set STRAIT_HELM)",
            path.display()
        );
        None
    }

    /// Runs `helm args...`.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = Command::new(&self.path)
            .args(args)
            // No user configuration or cache leaks into the tests.
            .env(
                "HELM_CONFIG_HOME",
                std::env::temp_dir().join("strait-helm/config"),
            )
            .env(
                "HELM_CACHE_HOME",
                std::env::temp_dir().join("strait-helm/cache"),
            )
            .env(
                "HELM_DATA_HOME",
                std::env::temp_dir().join("strait-helm/data"),
            )
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.path.display()));
        Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `helm template strait <chart> -n <namespace> -f <values>...`, with the CRDs.
    pub fn template(&self, namespace: &str, values: &[&Path]) -> Output {
        let chart = chart_dir();
        let mut args = vec![
            "template".to_owned(),
            "strait".to_owned(),
            chart.display().to_string(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--include-crds".to_owned(),
        ];
        for file in values {
            args.push("--values".to_owned());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// `helm lint [--strict] <chart> -f <values>...`.
    pub fn lint(&self, strict: bool, values: &[&Path]) -> Output {
        let chart = chart_dir();
        let mut args = vec!["lint".to_owned(), chart.display().to_string()];
        if strict {
            args.push("--strict".to_owned());
        }
        for file in values {
            args.push("--values".to_owned());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// Validates `object` against `schema` with helm's own JSON Schema validator (the one that
    /// checks values.schema.json): a scratch chart whose values schema is `schema`, rendered
    /// with `object` as its values. Returns helm's error text on failure.
    pub fn validate(
        &self,
        schema: &serde_json::Value,
        object: &serde_json::Value,
    ) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!(
            "strait-schema-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(dir.join("templates")).expect("creating a scratch chart");
        std::fs::write(
            dir.join("Chart.yaml"),
            "apiVersion: v2\nname: schema-check\nversion: 0.0.1\n",
        )
        .expect("writing Chart.yaml");
        std::fs::write(dir.join("values.schema.json"), schema.to_string())
            .expect("writing the schema");
        let values = dir.join("object.json");
        std::fs::write(&values, object.to_string()).expect("writing the object");
        let output = self.run(&[
            "template",
            "check",
            &dir.display().to_string(),
            "--values",
            &values.display().to_string(),
        ]);
        let _ = std::fs::remove_dir_all(&dir);
        if output.success {
            Ok(())
        } else {
            Err(output.stderr)
        }
    }
}
