//! Weighted backend choice for canary splits.
//!
//! [`pick`] maps a point in `[0, total weight)` to a backend; the point is random per request,
//! or a hash of a sticky header's value so one user stays on one side of a canary on every
//! proxy (the hash is FNV-1a, stable across processes and versions, unlike std's hasher).

/// Picks the index of the backend whose weight range holds `point`. Backends with weight 0
/// are never picked; `None` when every weight is 0.
///
/// ```
/// use strait_proxy::split::pick;
/// assert_eq!(pick(&[90, 10], 89), Some(0));
/// assert_eq!(pick(&[90, 10], 90), Some(1));
/// assert_eq!(pick(&[0, 0], 0), None);
/// ```
pub fn pick(weights: &[u32], point: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut point = point % total;
    for (index, weight) in weights.iter().enumerate() {
        let weight = u64::from(*weight);
        if point < weight {
            return Some(index);
        }
        point -= weight;
    }
    None
}

/// The split point for a request: a hash of the sticky header's value when there is one,
/// otherwise random.
pub fn point(sticky_value: Option<&[u8]>) -> u64 {
    match sticky_value {
        Some(value) => fnv1a(value),
        None => fastrand::u64(..),
    }
}

/// FNV-1a, 64-bit. Written here rather than taken from a crate: eight lines, and its output
/// must never change with a dependency upgrade, or sticky users would switch sides.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_lands_in_its_weight_range() {
        let weights = [3, 0, 2];
        let picks: Vec<_> = (0..5).map(|p| pick(&weights, p).unwrap()).collect();
        assert_eq!(picks, [0, 0, 0, 2, 2]);
        assert_eq!(pick(&weights, 5), Some(0), "points wrap around the total");
    }

    #[test]
    fn a_zero_weight_backend_is_never_picked() {
        for p in 0..1000 {
            assert_eq!(pick(&[0, 1], p), Some(1));
        }
    }

    #[test]
    fn random_points_follow_the_weights() {
        let weights = [90, 10];
        let mut counts = [0u32; 2];
        for _ in 0..100_000 {
            counts[pick(&weights, point(None)).unwrap()] += 1;
        }
        let share = f64::from(counts[1]) / 100_000.0;
        // 4 standard deviations of a binomial(100 000, 0.1) share is about 0.0038.
        assert!((share - 0.1).abs() < 0.0038, "canary share {share}");
    }

    #[test]
    fn sticky_points_are_stable_and_known() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(point(Some(b"user-42")), point(Some(b"user-42")));
    }
}
