//! Who may hold a connection to a control-plane port: a global cap, a cap per source address
//! on connections that have not proven a mesh identity, and a cap per proven identity.
//!
//! Why three caps. The global cap keeps the process inside its memory (~35 KiB per watching
//! proxy at the peak of a push, more while a handshake is under way). On its own it would let one client take every
//! slot, so the slots are also shared out by what the control plane knows about the client:
//!
//! - A connection that is still handshaking, or finished TLS without a client certificate,
//!   is *unproven*: all we know is its source address, so at most
//!   [`Limits::unproven_per_source`] of them per address. Proxies open such connections only
//!   to call `Certify` (at start and at renewal), one at a time, so a handful per address
//!   serves a node of pods; an attacker holding one workload gets that handful, not the port.
//! - A connection whose client certificate proved a mesh identity counts against that
//!   identity instead ([`Limits::per_identity`]): every replica of a Deployment shares one
//!   identity and holds one watching connection, so the cap is sized for the largest
//!   Deployment, and a stolen certificate can take no more than that.
//!
//! The decisions are the pure [`admit_connection`] and [`admit_identity`]; [`SlotTable`] keeps
//! the counts, and a [`Slot`] gives its place back when the connection is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The caps of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, in any state.
    pub total: usize,
    /// Connections from one source address that have not proven a mesh identity.
    pub unproven_per_source: usize,
    /// Connections that proved one mesh identity.
    pub per_identity: usize,
}

/// Why a connection was refused; [`Refusal::reason`] is the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The port holds [`Limits::total`] connections.
    Total,
    /// The source address holds [`Limits::unproven_per_source`] unproven connections.
    UnprovenPerSource,
    /// The proven identity holds [`Limits::per_identity`] connections.
    PerIdentity,
}

impl Refusal {
    /// The `reason` label of the refusal metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "max-connections",
            Refusal::UnprovenPerSource => "unproven-per-source",
            Refusal::PerIdentity => "per-identity",
        }
    }
}

/// Whether a new connection may be held, given how many the port holds (`open`) and how many
/// unproven ones its source address holds.
pub fn admit_connection(
    limits: &Limits,
    open: usize,
    unproven_from_source: usize,
) -> Result<(), Refusal> {
    if open >= limits.total {
        return Err(Refusal::Total);
    }
    if unproven_from_source >= limits.unproven_per_source {
        return Err(Refusal::UnprovenPerSource);
    }
    Ok(())
}

/// Whether a connection that just proved an identity may keep its slot, given how many that
/// identity holds already.
pub fn admit_identity(limits: &Limits, held_by_identity: usize) -> Result<(), Refusal> {
    if held_by_identity >= limits.per_identity {
        return Err(Refusal::PerIdentity);
    }
    Ok(())
}

/// The counts behind one port's caps.
#[derive(Debug)]
pub struct SlotTable {
    limits: Limits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    unproven: HashMap<IpAddr, usize>,
    proven: HashMap<String, usize>,
}

impl SlotTable {
    /// An empty table enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
        })
    }

    /// The caps enforced.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes a slot for a new, unproven connection from `source`.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refusal> {
        let source = source.to_canonical();
        let mut counts = self.lock();
        let from_source = counts.unproven.get(&source).copied().unwrap_or(0);
        admit_connection(&self.limits, counts.open, from_source)?;
        counts.open += 1;
        *counts.unproven.entry(source).or_default() += 1;
        Ok(Slot {
            table: self.clone(),
            source,
            identity: None,
        })
    }

    /// Connections held now: `(open, unproven from source)`.
    pub fn held(&self, source: IpAddr) -> (usize, usize) {
        let counts = self.lock();
        let from_source = counts
            .unproven
            .get(&source.to_canonical())
            .copied()
            .unwrap_or(0);
        (counts.open, from_source)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's place in a [`SlotTable`]; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    table: Arc<SlotTable>,
    source: IpAddr,
    identity: Option<String>,
}

impl Slot {
    /// Moves the connection from its source's unproven count to `identity`'s count, or
    /// refuses when that identity holds its cap (the slot then still counts as unproven
    /// until dropped).
    pub fn prove(&mut self, identity: &str) -> Result<(), Refusal> {
        if self.identity.is_some() {
            return Ok(());
        }
        let mut counts = self.table.lock();
        let held = counts.proven.get(identity).copied().unwrap_or(0);
        admit_identity(&self.table.limits, held)?;
        *counts.proven.entry(identity.to_owned()).or_default() += 1;
        release(&mut counts.unproven, &self.source);
        self.identity = Some(identity.to_owned());
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        counts.open -= 1;
        match self.identity.take() {
            Some(identity) => release(&mut counts.proven, &identity),
            None => release(&mut counts.unproven, &self.source),
        }
    }
}

/// Decrements `key`'s count, forgetting it at zero so the map holds only live entries.
fn release<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        total: 4,
        unproven_per_source: 2,
        per_identity: 2,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_connection_is_admitted_below_every_cap() {
        assert_eq!(admit_connection(&LIMITS, 3, 1), Ok(()));
        assert_eq!(admit_identity(&LIMITS, 1), Ok(()));
    }

    #[test]
    fn the_global_cap_refuses_first() {
        assert_eq!(admit_connection(&LIMITS, 4, 0), Err(Refusal::Total));
        assert_eq!(admit_connection(&LIMITS, 4, 2), Err(Refusal::Total));
    }

    #[test]
    fn one_source_cannot_hold_more_unproven_connections_than_its_share() {
        assert_eq!(
            admit_connection(&LIMITS, 2, 2),
            Err(Refusal::UnprovenPerSource)
        );
    }

    #[test]
    fn one_identity_cannot_hold_more_connections_than_its_share() {
        assert_eq!(admit_identity(&LIMITS, 2), Err(Refusal::PerIdentity));
    }

    #[test]
    fn refusal_reasons_are_distinct_metric_labels() {
        let reasons = [
            Refusal::Total.reason(),
            Refusal::UnprovenPerSource.reason(),
            Refusal::PerIdentity.reason(),
        ];
        assert_eq!(
            reasons
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3
        );
    }

    #[test]
    fn a_proven_connection_frees_its_sources_unproven_share() {
        let table = SlotTable::new(LIMITS);
        let mut first = table.admit(ip("10.0.0.1")).unwrap();
        let _second = table.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            table.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::UnprovenPerSource
        );
        first.prove("spiffe://td/ns/a/sa/web").unwrap();
        assert_eq!(table.held(ip("10.0.0.1")), (2, 1));
        let _third = table.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(table.held(ip("10.0.0.1")), (3, 2));
    }

    #[test]
    fn other_sources_are_admitted_while_one_is_at_its_share() {
        let table = SlotTable::new(LIMITS);
        let _held: Vec<Slot> = (0..2)
            .map(|_| table.admit(ip("10.0.0.2")).unwrap())
            .collect();
        assert!(table.admit(ip("10.0.0.2")).is_err());
        assert!(table.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_identity_at_its_cap_is_refused_and_the_slot_stays_unproven() {
        let table = SlotTable::new(LIMITS);
        let mut slots: Vec<Slot> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|a| table.admit(ip(a)).unwrap())
            .collect();
        slots[0].prove("web").unwrap();
        slots[1].prove("web").unwrap();
        assert_eq!(slots[2].prove("web"), Err(Refusal::PerIdentity));
        assert_eq!(table.held(ip("10.0.0.3")), (3, 1));
        slots[2].prove("api").unwrap();
    }

    #[test]
    fn dropping_slots_frees_every_count() {
        let table = SlotTable::new(LIMITS);
        {
            let mut a = table.admit(ip("10.0.0.1")).unwrap();
            let _b = table.admit(ip("::ffff:10.0.0.1")).unwrap();
            a.prove("web").unwrap();
            assert_eq!(table.held(ip("10.0.0.1")), (2, 1));
        }
        assert_eq!(table.held(ip("10.0.0.1")), (0, 0));
        let counts = table.lock();
        assert!(counts.unproven.is_empty() && counts.proven.is_empty());
    }

    #[test]
    fn the_global_cap_holds_across_sources() {
        let table = SlotTable::new(LIMITS);
        let _held: Vec<Slot> = (1..=4)
            .map(|i| table.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(table.admit(ip("10.0.0.9")).unwrap_err(), Refusal::Total);
    }
}
