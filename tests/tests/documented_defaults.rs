//! docs/configuration.md against the code's defaults: the "Defaults at a glance" table is
//! rendered from `strait_proto::defaults` (and the two proxy behaviours it describes), and the
//! default column of the field tables must say the same. Changing a default without its
//! documentation fails here with both lines; `STRAIT_BLESS_DOCS=1` rewrites the table.

use std::path::Path;

use strait_proto::defaults::reference::{self, ProxyBehaviour};

fn proxy_behaviour() -> ProxyBehaviour {
    ProxyBehaviour {
        not_sent_retries: strait_proxy::resilience::retry::NOT_SENT_RETRIES,
        ewma_decay: strait_proxy::resilience::balance::DECAY,
    }
}

#[test]
fn the_documented_defaults_are_the_code_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let document = std::fs::read_to_string(&path).expect("reading docs/configuration.md");
    if std::env::var_os("STRAIT_BLESS_DOCS").is_some() {
        let rendered = reference::render_into(&document, proxy_behaviour())
            .expect("docs/configuration.md has the defaults markers");
        std::fs::write(&path, rendered).expect("writing docs/configuration.md");
        return;
    }
    if let Err(problems) = reference::check_document(&document, proxy_behaviour()) {
        panic!(
            "{} does not match the defaults in the code (rerun with STRAIT_BLESS_DOCS=1 to render the table):\n{problems}",
            path.display()
        );
    }
}
