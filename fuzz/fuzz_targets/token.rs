//! The token parser (`auth::Access::verify`), the base64url decoder and the
//! token carriers on arbitrary input.
//!
//! Input: a token as a client would send it (seeds/token has PyJWT-minted
//! ones); or, when it holds a newline, a header and claims as plain JSON
//! (`{"alg":"HS256"}\n{"exp":1}`), which the target encodes and signs with
//! the key, so that the claims checks are fuzzed too (the fuzzer cannot
//! sign, and would otherwise never get past the signature).
//!
//! Checked, beyond "nothing panics":
//! - a token is accepted only if its signature is the HMAC-SHA-256 of its
//!   first two parts with the key, computed here with `hmac` (so no input
//!   forges one), its header says exactly `"alg":"HS256"`, and, with `exp`,
//!   only before `exp` plus the leeway (an old-claim token's; an `at+jwt`
//!   has none) (tried at several times);
//! - what `base64url_decode` accepts is the one canonical unpadded base64url
//!   encoding of what it returns (re-encoded with the `base64` crate);
//! - a token taken from a `Cookie`, `Authorization` or query value never
//!   shows in the carriers' `Debug`.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use sseloop::_internals::auth::{Access, Credentials, LEEWAY_SECS, TokenPolicy, base64url_decode};
use sseloop::_internals::mercure::patterns;

/// The key of the seeds in seeds/token (minted with PyJWT).
const KEY: &[u8] = b"sseloop-fuzz-key-0123456789abcdef0123456789";
/// Times each token is checked at: before, around and after the seeds'
/// dates, and the extremes.
const NOWS: [i64; 5] = [0, 1_900_000_000, 2_000_000_004, i64::MAX, i64::MIN];

fn mac(input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// The hub these tokens are for (their audience).
const HUB: &str = "https://hub.example/.well-known/mercure";

/// Verifies `token` at each time; checks what was accepted.
fn verify(access: &Access, token: &str) {
    let mut patterns = patterns(HUB);
    for now in NOWS {
        let Ok(grants) = access.verify(token, now, &mut patterns) else {
            continue;
        };
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "accepted {token:?}");
        let signed = &token[..parts[0].len() + 1 + parts[1].len()];
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).ok(),
            Some(mac(signed.as_bytes())),
            "accepted a token not signed with the key: {token:?}"
        );
        let json = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let header = json(parts[0]);
        assert_eq!(header["alg"], "HS256", "accepted header {header}");
        if let Some(exp) = json(parts[1])
            .get("exp")
            .and_then(serde_json::Value::as_f64)
        {
            assert!(
                (now as f64) < exp.floor() + LEEWAY_SECS as f64,
                "accepted at {now} a token with exp {exp}"
            );
        }
        assert!(grants.expires().is_none_or(|at| now < at));
    }
}

fuzz_target!(|data: &[u8]| {
    let policy = TokenPolicy {
        audience: HUB.into(),
        issuer: None,
        anonymous: false,
    };
    let access = Access::new(KEY, &["news"], policy).unwrap();
    let raw = String::from_utf8_lossy(data);
    verify(&access, &raw);
    if let Some((header, claims)) = raw.split_once('\n') {
        let head = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let token = format!("{head}.{}", URL_SAFE_NO_PAD.encode(mac(head.as_bytes())));
        verify(&access, &token);
    }

    if let Some(bytes) = base64url_decode(data) {
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&bytes).as_bytes(),
            data,
            "not canonical"
        );
    }

    for carriers in [
        {
            let mut c = Credentials::default();
            c.cookies(data);
            c
        },
        {
            let mut c = Credentials::default();
            c.authorization(data);
            c
        },
        {
            let mut c = Credentials::default();
            c.query(&raw);
            c
        },
    ] {
        let shown = format!("{carriers:?}");
        if let Ok(Some(token)) = carriers.subscribe_token()
            && token.len() > 8
        {
            assert!(!shown.contains(token), "{shown} shows {token:?}");
        }
    }
});
