//! The request-smuggling checks on arbitrary request heads: the first line of the input is
//! the target, each further line a `name:value` header (lines that are not a valid name or
//! value are skipped, as hyper would have refused them), the first byte picks the version.
//!
//! Asserts the module's contract exactly: a head that passes has at most one
//! `Content-Length`, never both `Content-Length` and `Transfer-Encoding`, at most one `Host`,
//! and (HTTP/1) a `Host` equal to an absolute target's authority; a refusal names what the
//! head really contains; no other header is touched.
#![no_main]

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Version};
use libfuzzer_sys::fuzz_target;
use strait_proxy::http::smuggling::{SmugglingError, check};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|b| *b == b'\n');
    let target = lines.next().unwrap_or_default();
    let version = match selector % 4 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        2 => Version::HTTP_2,
        _ => Version::HTTP_3,
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut builder = http::Request::builder().uri(uri).version(version);
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (mut head, ()) = request.into_parts();
    let before = head.headers.clone();
    let count = |h: &http::HeaderMap, name| h.get_all(name).iter().count();
    match check(&mut head) {
        Ok(()) => {
            let after = &head.headers;
            assert!(count(after, CONTENT_LENGTH) <= 1);
            assert!(!(after.contains_key(CONTENT_LENGTH) && after.contains_key(TRANSFER_ENCODING)));
            assert!(count(after, HOST) <= 1);
            if let (true, Some(authority), Some(_)) = (
                version < Version::HTTP_2,
                head.uri.authority(),
                before.get(HOST),
            ) && HeaderValue::from_str(authority.as_str()).is_ok()
            {
                assert_eq!(after[HOST].as_bytes(), authority.as_str().as_bytes());
            }
            for name in before.keys() {
                if name != CONTENT_LENGTH && name != HOST {
                    assert_eq!(
                        before.get_all(name).iter().collect::<Vec<_>>(),
                        after.get_all(name).iter().collect::<Vec<_>>(),
                        "{name} changed"
                    );
                }
            }
            assert_eq!(before.keys_len(), after.keys_len());
        }
        Err(SmugglingError::LengthAndEncoding) => {
            assert!(before.contains_key(CONTENT_LENGTH) && before.contains_key(TRANSFER_ENCODING));
        }
        Err(SmugglingError::DisagreeingLengths) => {
            let mut lengths = before.get_all(CONTENT_LENGTH).iter();
            let first = lengths.next().expect("at least two lengths");
            assert!(lengths.any(|l| l != first));
        }
        Err(SmugglingError::SeveralHosts(n)) => {
            assert!(n > 1);
            assert_eq!(n, count(&before, HOST));
        }
    }
});
