//! Reads a proxy's or control plane's `/metrics` back through a Prometheus text-format
//! parser, so tests assert on parsed samples, not on substrings.

use std::net::SocketAddr;

use prometheus_parse::{Sample, Scrape, Value};

/// One scrape.
pub struct Metrics {
    scrape: Scrape,
    /// The raw text, for failure messages.
    pub text: String,
}

impl Metrics {
    /// Scrapes `admin`'s `/metrics`.
    pub async fn fetch(admin: SocketAddr) -> Self {
        let text = crate::client::get(admin, "admin", "/metrics").await.text();
        Self::parse(text)
    }

    /// Parses exposition text.
    pub fn parse(text: String) -> Self {
        let scrape =
            Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parsing /metrics");
        Self { scrape, text }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counter, gauge or untyped samples named `name` whose labels include
    /// `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// The number of observations in the histograms named `name` whose labels include `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count)
                    .unwrap_or(0.0),
                _ => 0.0,
            })
            .sum()
    }

    /// Every metric name present.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scrape
            .samples
            .iter()
            .map(|s| s.metric.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every label name carried by samples of `name`.
    pub fn label_names(&self, name: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (metric, rest) = line.split_once('{')?;
                let metric = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s))
                    .unwrap_or(metric);
                (metric == name).then_some(rest)
            })
            .flat_map(|rest| {
                rest.split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim().to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The label values of `label` across samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        values
    }
}
