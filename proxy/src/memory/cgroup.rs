//! The memory limit of the container the proxy runs in, read from its cgroup: `memory.max`
//! (cgroup v2) or `memory.limit_in_bytes` (cgroup v1), the smallest along the path from the
//! proxy's own cgroup up to the hierarchy's mount, since a parent's limit binds its children.
//!
//! Written here rather than taken from a crate: the cgroup crates manage cgroups (create,
//! attach, set); reading one number needs the two `/proc` files parsed below and nothing
//! else. The parsers are pure functions over the files' text so they are tested on the
//! shapes a container, a host and a hybrid v1/v2 machine produce.

use std::path::{Path, PathBuf};

/// A cgroup v1 limit at or above this is "no limit": the kernel writes `PAGE_COUNTER_MAX`
/// pages (9 223 372 036 854 771 712 bytes on 4 KiB pages) when none is set.
const V1_UNLIMITED: u64 = 1 << 60;

/// Which cgroup interface a limit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy's `memory.max`.
    V2,
    /// The memory controller's `memory.limit_in_bytes`.
    V1,
}

/// A cgroup directory holding the proxy, and how its limit file is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryCgroup {
    /// Interface version.
    pub version: Version,
    /// The proxy's cgroup directory, under the hierarchy's mount point.
    pub dir: PathBuf,
    /// The mount point: the walk up to parents stops here.
    pub mount: PathBuf,
}

impl MemoryCgroup {
    fn limit_file(&self) -> &'static str {
        match self.version {
            Version::V2 => "memory.max",
            Version::V1 => "memory.limit_in_bytes",
        }
    }

    /// The smallest limit on the path from this cgroup to the mount; `None` when no
    /// directory on it sets one (or none can be read).
    pub fn limit(&self) -> Option<u64> {
        let mut dir = Some(self.dir.as_path());
        let mut smallest: Option<u64> = None;
        while let Some(here) = dir {
            let text = std::fs::read_to_string(here.join(self.limit_file()));
            if let Some(limit) = text.ok().and_then(|t| parse_limit(self.version, &t)) {
                smallest = Some(smallest.map_or(limit, |s| s.min(limit)));
            }
            if here == self.mount {
                break;
            }
            dir = here.parent().filter(|p| p.starts_with(&self.mount));
        }
        smallest
    }
}

/// The memory limit of the proxy's container, and where it was read; `None` when the
/// proxy is not in a memory-limited cgroup (or the files are not readable).
pub fn container_limit() -> Option<(u64, MemoryCgroup)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // v2 first: on a hybrid machine the unified hierarchy may exist without the memory
    // controller, and then it has no memory.max and the v1 controller holds the limit.
    [Version::V2, Version::V1].into_iter().find_map(|version| {
        let cgroup = locate(version, &cgroups, &mounts)?;
        Some((cgroup.limit()?, cgroup))
    })
}

/// Where the proxy's cgroup of `version` is, from the texts of `/proc/self/cgroup` and
/// `/proc/self/mountinfo`.
pub fn locate(version: Version, cgroups: &str, mountinfo: &str) -> Option<MemoryCgroup> {
    let path = own_path(version, cgroups)?;
    let (root, mount) = mount_of(version, mountinfo)?;
    // Inside a cgroup namespace (or a bind-mounted container view) the mount's root is the
    // proxy's own cgroup or an ancestor of it; the rest of the path is below the mount point.
    let relative = Path::new(path).strip_prefix(root).ok()?;
    Some(MemoryCgroup {
        version,
        dir: mount.join(relative),
        mount,
    })
}

/// The proxy's cgroup path of `version` from `/proc/self/cgroup` (`ID:controllers:path`).
fn own_path(version: Version, cgroups: &str) -> Option<&str> {
    cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        matches.then_some(path)
    })
}

/// The root and mount point of the hierarchy of `version` from `/proc/self/mountinfo`
/// (`ID PARENT MAJ:MIN ROOT MOUNT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`).
fn mount_of(version: Version, mountinfo: &str) -> Option<(&str, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        let matches = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "memory"),
        };
        if !matches || left.len() < 5 {
            return None;
        }
        Some((left[3], PathBuf::from(unescape(left[4]))))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The limit a limit file states, or `None` for "no limit" (and for text that is not one).
pub fn parse_limit(version: Version, text: &str) -> Option<u64> {
    let text = text.trim();
    match version {
        Version::V2 if text == "max" => None,
        Version::V2 => text.parse().ok(),
        Version::V1 => text.parse().ok().filter(|&bytes| bytes < V1_UNLIMITED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Kubernetes pod on a cgroup v2 node, inside its cgroup namespace.
    const POD_V2_CGROUP: &str = "0::/\n";
    const POD_V2_MOUNTS: &str = "\
1085 1080 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
1081 1080 0:99 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";

    /// A hybrid host (systemd's hybrid mode): v2 mounted without controllers, memory on v1.
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/bc99
3:cpuset:/
0::/
";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A v1 container whose memory hierarchy is bind-mounted from its own cgroup.
    const V1_CONTAINER_CGROUP: &str =
        "5:cpu,cpuacct:/kubepods/pod1/c1\n7:memory:/kubepods/pod1/c1\n";
    const V1_CONTAINER_MOUNTS: &str = "\
700 690 0:35 /kubepods/pod1/c1 /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn a_pod_in_its_cgroup_namespace_reads_the_mount_points_own_file() {
        let cgroup = locate(Version::V2, POD_V2_CGROUP, POD_V2_MOUNTS).unwrap();
        assert_eq!(cgroup.dir, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(locate(Version::V1, POD_V2_CGROUP, POD_V2_MOUNTS), None);
    }

    #[test]
    fn on_a_hybrid_host_the_memory_controller_is_found_on_v1() {
        let v1 = locate(Version::V1, HYBRID_CGROUP, HYBRID_MOUNTS).unwrap();
        assert_eq!(
            v1.dir,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/bc99")
        );
        assert_eq!(v1.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        // The unified hierarchy is there too; its directory simply has no memory.max.
        let v2 = locate(Version::V2, HYBRID_CGROUP, HYBRID_MOUNTS).unwrap();
        assert_eq!(v2.dir, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_bind_mounted_container_cgroup_is_the_mount_point_itself() {
        let cgroup = locate(Version::V1, V1_CONTAINER_CGROUP, V1_CONTAINER_MOUNTS).unwrap();
        assert_eq!(cgroup.dir, PathBuf::from("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn a_cgroup_outside_the_mounted_root_is_not_guessed_at() {
        let mounts = "700 690 0:35 /other /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        assert_eq!(locate(Version::V1, V1_CONTAINER_CGROUP, mounts), None);
    }

    #[test]
    fn unlimited_and_garbage_limits_are_no_limit() {
        assert_eq!(parse_limit(Version::V2, "max\n"), None);
        assert_eq!(parse_limit(Version::V2, "67108864\n"), Some(64 << 20));
        assert_eq!(parse_limit(Version::V1, "9223372036854771712\n"), None);
        assert_eq!(parse_limit(Version::V1, "134217728"), Some(128 << 20));
        assert_eq!(parse_limit(Version::V2, "lots"), None);
        assert_eq!(parse_limit(Version::V1, ""), None);
    }

    #[test]
    fn the_smallest_limit_from_the_cgroup_up_to_the_mount_binds() {
        let root = std::env::temp_dir().join(format!("strait-cgroup-{}", std::process::id()));
        let child = root.join("pod").join("container");
        std::fs::create_dir_all(&child).unwrap();
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        std::fs::write(root.join("pod").join("memory.max"), "50331648\n").unwrap();
        std::fs::write(child.join("memory.max"), "max\n").unwrap();
        let cgroup = MemoryCgroup {
            version: Version::V2,
            dir: child,
            mount: root.clone(),
        };
        assert_eq!(cgroup.limit(), Some(48 << 20));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn mount_paths_with_escaped_spaces_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
