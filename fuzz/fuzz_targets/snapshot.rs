//! Discovery snapshot decoding in the proxy: bytes off the `Discovery.Watch` stream decoded
//! with prost and compiled into a routing table (`table::build::build`, what
//! `TableHandle::apply` runs), on top of a table already in force so carried-over state is
//! exercised too. Three kinds of input (the first byte picks): arbitrary protobuf bytes; a
//! real snapshot (the control plane's, for a workload of `examples/local`) with bytes changed;
//! arbitrary JSON, as a `--snapshot` file is read.
//!
//! Asserts: nothing panics, an entry set aside says why, and the table built answers requests
//! (route, split, pick, authorize) without panicking.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strait_proto::discovery::v1 as pb;
use strait_proxy::connect::Connector;
use strait_proxy::table::build::build;
use strait_proxy::table::{EndpointSettings, Table};

struct World {
    settings: EndpointSettings,
    valid: Vec<Vec<u8>>,
    previous: Table,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local");
        let model = strait_control_plane::config::load(&dir).expect("examples/local is valid");
        let valid: Vec<Vec<u8>> = model
            .workloads
            .values()
            .map(|w| strait_control_plane::discovery::snapshot::snapshot_for(&model, w))
            .map(|s| s.encode_to_vec())
            .collect();
        let settings = EndpointSettings {
            connector: Connector::new(Duration::from_secs(1), None),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            mtls: true,
            heads: strait_proxy::head_limits::HeadLimits {
                max_bytes: 65_536,
                max_fields: 100,
            },
        };
        let first = pb::Snapshot::decode(&valid[0][..]).expect("a real snapshot decodes");
        let previous = build(first, &Table::empty(), &settings);
        assert!(previous.set_aside().is_empty(), "a real snapshot builds whole");
        World {
            settings,
            valid,
            previous,
        }
    })
}

fn snapshot(data: &[u8], world: &World) -> Option<pb::Snapshot> {
    let (&mode, rest) = data.split_first()?;
    match mode % 3 {
        0 => pb::Snapshot::decode(rest).ok(),
        1 => {
            let (&which, edits) = rest.split_first()?;
            let mut bytes = world.valid[usize::from(which) % world.valid.len()].clone();
            // (offset: u16, xor: u8) triples.
            for edit in edits.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % bytes.len();
                bytes[at] ^= edit[2];
            }
            pb::Snapshot::decode(&bytes[..]).ok()
        }
        _ => serde_json::from_slice(rest).ok(),
    }
}

fn exercise(table: &Table, snapshot: &pb::Snapshot) {
    let request = http::Request::get("/api/v1?x=1")
        .header("x-user", "fuzz")
        .header("content-type", "application/grpc")
        .body(())
        .expect("a request builds");
    let (head, ()) = request.into_parts();
    for service in &snapshot.services {
        for authority in &service.authorities {
            let Some(compiled) = table.service_for_authority(authority) else {
                continue;
            };
            let _ = compiled.default_route();
            if let Some(route) = compiled.route(&head)
                && let Some(index) = route.pick_backend(&head.headers)
            {
                let _ = route.backends[index].0.pick(&[]);
            }
        }
    }
    let caller: strait_identity::SpiffeId = "spiffe://cluster.local/ns/demo/sa/web"
        .parse()
        .expect("SPIFFE ID");
    for port in &snapshot.inbound_ports {
        let Ok(port) = u16::try_from(port.port) else {
            continue;
        };
        for caller in [None, Some(&caller)] {
            let _ = table.authorize(port, "cluster.local", caller, Some(&head));
            let _ = table.authorize(port, "cluster.local", caller, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let Some(snapshot) = snapshot(data, world) else {
        return;
    };
    let table = build(snapshot.clone(), &world.previous, &world.settings);
    for entry in table.set_aside() {
        assert!(!entry.reason.is_empty());
    }
    exercise(&table, &snapshot);
});
