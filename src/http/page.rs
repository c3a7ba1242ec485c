//! The two pages sseloop serves, the wire inspector (`GET /`) and the
//! failure lab's (`GET /lab`): embedded gzip-compressed by `build.rs`
//! (65 KB of HTML are 19 KB in the binary), sent so to clients that take
//! gzip (every browser, `curl --compressed`), and decoded once, on the
//! first request that does not, for the others (by the lab's small
//! decoder, `sseloop_lab::inflate`).

use std::sync::OnceLock;

use sseloop_lab::inflate::gunzip;

/// A page: its gzip member, and its text once a client needed it.
#[derive(Debug)]
pub struct Page {
    gzip: &'static [u8],
    plain: OnceLock<Box<[u8]>>,
}

/// The wire inspector, `src/inspector.html`.
pub static INSPECTOR: Page = Page::new(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/inspector.html.gz"
)));

/// The failure lab's page, `src/lab.html`.
pub static LAB: Page = Page::new(include_bytes!(concat!(env!("OUT_DIR"), "/lab.html.gz")));

impl Page {
    const fn new(gzip: &'static [u8]) -> Page {
        Page {
            gzip,
            plain: OnceLock::new(),
        }
    }

    /// The body to send: the gzip member when the client takes gzip, else
    /// the text.
    pub fn body(&self, gzip: bool) -> &[u8] {
        if gzip {
            return self.gzip;
        }
        // build.rs made the member and the tests decode it: it cannot fail.
        self.plain
            .get_or_init(|| gunzip(self.gzip).unwrap_or_default().into_boxed_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_decode_to_their_sources() {
        for (page, source) in [
            (&INSPECTOR, include_str!("../inspector.html")),
            (&LAB, include_str!("../lab.html")),
        ] {
            // The source without the notes at its top (an HTML comment).
            let (start, end) = (
                source.find("\n<!--").unwrap() + 1,
                source.find("-->\n").unwrap() + 4,
            );
            let source = &(source[..start].to_owned() + &source[end..]);
            assert!(
                source.starts_with("<!doctype html>\n<"),
                "{}",
                &source[..40]
            );
            assert_eq!(page.body(false), source.as_bytes());
            assert!(page.body(true).len() < source.len() / 2);
            let gzip = page.body(true);
            let deflated = &gzip[10..gzip.len() - 8];
            let plain = miniz_oxide::inflate::decompress_to_vec(deflated).unwrap();
            assert_eq!(plain, source.as_bytes(), "a standard decoder reads it too");
        }
        assert_eq!(gunzip(b"\x1f\x8b\x08\x00"), None);
        let mut corrupt = LAB.gzip.to_vec();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(gunzip(&corrupt), None, "the length is checked");
    }
}
