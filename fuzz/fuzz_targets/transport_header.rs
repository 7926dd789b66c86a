//! The transport header that opens every proxy-to-proxy connection, on arbitrary bytes: the
//! reader never panics, consumes exactly the magic, the length byte and the body it names
//! (never a byte of the application stream behind it), and whatever it accepts survives an
//! encode and read back unchanged.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strait_proxy::transport_header::{Header, MAGIC};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fuzz_target!(|data: &[u8]| {
    // Both as sent and with the magic in front, so the fuzzer need not find the magic first.
    for input in [data.to_vec(), [&MAGIC[..], data].concat()] {
        let mut rest = &input[..];
        let Ok(header) = runtime().block_on(Header::read(&mut rest)) else {
            continue;
        };
        let consumed = input.len() - rest.len();
        let body_len = usize::from(input[MAGIC.len()]);
        assert_eq!(consumed, MAGIC.len() + 1 + body_len, "read past the header");
        let body = &input[MAGIC.len() + 1..consumed];
        assert_eq!(Header::decode(body).unwrap(), header);
        let encoded = header.encode();
        let mut reread = &encoded[..];
        assert_eq!(
            runtime().block_on(Header::read(&mut reread)).unwrap(),
            header
        );
    }
    let _ = Header::decode(data);
});
