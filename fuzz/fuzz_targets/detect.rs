//! Protocol detection's classifier on arbitrary first bytes: it never panics, decides within
//! a bounded number of bytes, and never changes its mind when more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait_proxy::detect::{H2_PREFACE, Verdict, classify};

/// Longest prefix that can still be undecided: a method token of up to 24 bytes, or a
/// prefix of the HTTP/2 preface.
const MAX_UNDECIDED: usize = 25;

fuzz_target!(|data: &[u8]| {
    let mut first_known = None;
    // Every short prefix (where decisions are made) and the whole input.
    let ends = (0..=data.len().min(64)).chain([data.len()]);
    for end in ends {
        match classify(&data[..end]) {
            Verdict::NeedMore => {
                assert!(first_known.is_none(), "decided, then undecided at {end}");
                assert!(
                    end < MAX_UNDECIDED.max(H2_PREFACE.len()),
                    "undecided after {end} bytes"
                );
            }
            Verdict::Known(protocol) => match first_known {
                None => first_known = Some(protocol),
                Some(earlier) => assert_eq!(earlier, protocol, "changed its mind at {end}"),
            },
        }
    }
});
