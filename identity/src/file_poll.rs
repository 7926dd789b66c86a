//! Noticing that files changed, by polling: the one mechanism behind every "re-read it when it
//! changes" in the mesh (the proxy's snapshot file, the CA files, the injector's serving
//! certificate, the control plane's configuration directory).
//!
//! A file is seen by its modification time and size; an unreadable or missing file is seen as
//! absent, so its appearance or disappearance is a change too. Polling needs no inotify, works
//! on every filesystem and follows Kubernetes ConfigMap and Secret mounts, which swap a
//! symlinked directory rather than write files. It lives in this crate because this is the one
//! crate both binaries share; it owns no identity concept and never reads file contents.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What one file looked like when it was last checked: its modification time and size, or
/// `None` when it could not be read.
type Seen = Option<(SystemTime, u64)>;

fn seen(path: &Path) -> Seen {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn look(listing: &Listing) -> Vec<(PathBuf, Seen)> {
    listing
        .paths()
        .into_iter()
        .map(|path| {
            let seen = seen(&path);
            (path, seen)
        })
        .collect()
}

/// Which files a [`FilePoll`] looks at.
enum Listing {
    /// Always these.
    Fixed(Vec<PathBuf>),
    /// Whatever this lists at each look (a directory's files): files appearing or going away
    /// are changes too.
    Dynamic(Box<dyn Fn() -> Vec<PathBuf> + Send + Sync>),
}

impl Listing {
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Listing::Fixed(paths) => paths.clone(),
            Listing::Dynamic(list) => {
                let mut paths = list();
                paths.sort();
                paths
            }
        }
    }
}

/// A set of files checked every `period` for a change of modification time or size.
pub struct FilePoll {
    listing: Listing,
    period: Duration,
    last: Vec<(PathBuf, Seen)>,
}

impl std::fmt::Debug for FilePoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePoll")
            .field("period", &self.period)
            .field("files", &self.last.len())
            .finish()
    }
}

impl FilePoll {
    /// Starts watching `paths`: what they look like now is the baseline, not a change.
    pub fn new(paths: impl IntoIterator<Item = PathBuf>, period: Duration) -> Self {
        Self::start(Listing::Fixed(paths.into_iter().collect()), period)
    }

    /// Starts watching the files `list` names, listed again at every look (for a directory
    /// whose files come and go); what they look like now is the baseline.
    pub fn listing(
        list: impl Fn() -> Vec<PathBuf> + Send + Sync + 'static,
        period: Duration,
    ) -> Self {
        Self::start(Listing::Dynamic(Box::new(list)), period)
    }

    fn start(listing: Listing, period: Duration) -> Self {
        let last = look(&listing);
        Self {
            listing,
            period,
            last,
        }
    }

    /// Looks at the files now: whether any differs from the last look (the first look is the
    /// one [`FilePoll::new`] made). Every look becomes the baseline for the next.
    pub fn check(&mut self) -> bool {
        let now = look(&self.listing);
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }

    /// Waits one period, then [`FilePoll::check`]s: for a loop that does more on every tick.
    pub async fn tick(&mut self) -> bool {
        tokio::time::sleep(self.period).await;
        self.check()
    }

    /// Waits, one period at a time, until the files changed.
    pub async fn changed(&mut self) {
        while !self.tick().await {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fresh directory for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "strait-file-poll-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const PERIOD: Duration = Duration::from_millis(250);

    #[test]
    fn files_as_they_are_at_the_start_are_not_a_change() {
        let dir = TempDir::new();
        std::fs::write(dir.file("a"), "one").unwrap();
        let mut poll = FilePoll::new([dir.file("a"), dir.file("missing")], PERIOD);
        assert!(!poll.check());
        assert!(!poll.check());
    }

    #[test]
    fn a_rewritten_file_is_one_change_then_the_new_baseline() {
        let dir = TempDir::new();
        std::fs::write(dir.file("a"), "one").unwrap();
        std::fs::write(dir.file("b"), "two").unwrap();
        let mut poll = FilePoll::new([dir.file("a"), dir.file("b")], PERIOD);
        // A different size, so the change shows even where mtimes are coarse.
        std::fs::write(dir.file("b"), "two, longer").unwrap();
        assert!(poll.check());
        assert!(!poll.check());
    }

    #[test]
    fn a_file_appearing_or_disappearing_is_a_change() {
        let dir = TempDir::new();
        let mut poll = FilePoll::new([dir.file("a")], PERIOD);
        std::fs::write(dir.file("a"), "").unwrap();
        assert!(poll.check(), "appeared");
        std::fs::remove_file(dir.file("a")).unwrap();
        assert!(poll.check(), "disappeared");
        assert!(!poll.check());
    }

    #[test]
    fn a_listed_directory_sees_files_added_changed_and_removed() {
        let dir = TempDir::new();
        std::fs::write(dir.file("a"), "one").unwrap();
        let root = dir.0.clone();
        let mut poll = FilePoll::listing(
            move || {
                std::fs::read_dir(&root)
                    .map(|entries| entries.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default()
            },
            PERIOD,
        );
        assert!(!poll.check(), "the files at the start are the baseline");
        std::fs::write(dir.file("b"), "new").unwrap();
        assert!(poll.check(), "a new file");
        assert!(!poll.check());
        std::fs::write(dir.file("a"), "one more").unwrap();
        assert!(poll.check(), "a rewritten file");
        std::fs::remove_file(dir.file("b")).unwrap();
        assert!(poll.check(), "a removed file");
        assert!(!poll.check());
    }

    #[tokio::test(start_paused = true)]
    async fn tick_waits_one_period_and_reports_whether_anything_changed() {
        let dir = TempDir::new();
        std::fs::write(dir.file("a"), "one").unwrap();
        let mut poll = FilePoll::new([dir.file("a")], PERIOD);
        let start = tokio::time::Instant::now();
        assert!(!poll.tick().await);
        assert_eq!(start.elapsed(), PERIOD);
        std::fs::write(dir.file("a"), "one more").unwrap();
        assert!(poll.tick().await);
        assert_eq!(start.elapsed(), 2 * PERIOD);
    }

    #[tokio::test(start_paused = true)]
    async fn changed_returns_on_the_first_tick_after_a_change() {
        let dir = TempDir::new();
        std::fs::write(dir.file("a"), "one").unwrap();
        let mut poll = FilePoll::new([dir.file("a")], PERIOD);
        // Nothing changes: three periods pass without a return.
        let quiet = tokio::time::timeout(3 * PERIOD + PERIOD / 2, poll.changed()).await;
        assert!(quiet.is_err(), "returned without a change");
        std::fs::write(dir.file("a"), "one more").unwrap();
        let start = tokio::time::Instant::now();
        tokio::time::timeout(10 * PERIOD, poll.changed())
            .await
            .expect("the change was noticed");
        assert!(start.elapsed() <= PERIOD, "{:?}", start.elapsed());
    }
}
