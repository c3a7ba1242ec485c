//! The draft's character rule for topics, matcher values, ids and types:
//! valid UTF-8 (a `&str` already is) without C0 controls (U+0000–U+001F),
//! U+007F, C1 controls (U+0080–U+009F) or format characters (general
//! category `Cf`: zero-width and bidirectional controls, which are
//! invisible and let one identifier pass for another).
//!
//! `Cf` is a table of code-point ranges from Unicode 17.0.0, the version
//! draft-dunglas-mercure-08 cites, generated once with Python's
//! `unicodedata2` 17.0.0:
//!
//! ```text
//! python3 -c 'import unicodedata2 as u; print([hex(c) for c in range(0x110000) if u.category(chr(c)) == "Cf"])'
//! ```
//!
//! A later Unicode may add `Cf` code points; the draft lets a hub reject
//! those too, so regenerating the table is always allowed.

/// The `Cf` code points of Unicode 17.0.0, as sorted inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // SOFT HYPHEN
    (0x0600, 0x0605),   // ARABIC NUMBER SIGN .. ARABIC NUMBER MARK ABOVE
    (0x061C, 0x061C),   // ARABIC LETTER MARK
    (0x06DD, 0x06DD),   // ARABIC END OF AYAH
    (0x070F, 0x070F),   // SYRIAC ABBREVIATION MARK
    (0x0890, 0x0891),   // ARABIC POUND MARK ABOVE .. ARABIC PIASTRE MARK ABOVE
    (0x08E2, 0x08E2),   // ARABIC DISPUTED END OF AYAH
    (0x180E, 0x180E),   // MONGOLIAN VOWEL SEPARATOR
    (0x200B, 0x200F),   // ZERO WIDTH SPACE .. RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),   // LEFT-TO-RIGHT EMBEDDING .. RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x2064),   // WORD JOINER .. INVISIBLE PLUS
    (0x2066, 0x206F),   // LEFT-TO-RIGHT ISOLATE .. NOMINAL DIGIT SHAPES
    (0xFEFF, 0xFEFF),   // ZERO WIDTH NO-BREAK SPACE
    (0xFFF9, 0xFFFB),   // INTERLINEAR ANNOTATION ANCHOR .. TERMINATOR
    (0x110BD, 0x110BD), // KAITHI NUMBER SIGN
    (0x110CD, 0x110CD), // KAITHI NUMBER SIGN ABOVE
    (0x13430, 0x1343F), // EGYPTIAN HIEROGLYPH VERTICAL JOINER .. END WALLED ENCLOSURE
    (0x1BCA0, 0x1BCA3), // SHORTHAND FORMAT LETTER OVERLAP .. UP STEP
    (0x1D173, 0x1D17A), // MUSICAL SYMBOL BEGIN BEAM .. END PHRASE
    (0xE0001, 0xE0001), // LANGUAGE TAG
    (0xE0020, 0xE007F), // TAG SPACE .. CANCEL TAG
];

/// The Unicode version of the `Cf` table (its test compares it with
/// Python's).
#[cfg(test)]
pub const UNICODE_VERSION: &str = "17.0.0";

/// Whether `c` is a format character (general category `Cf`).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    // Every Cf code point is at or above U+00AD: ASCII never searches.
    c >= 0xAD
        && FORMAT
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// Whether the draft forbids `c` in a topic, matcher, id or type.
pub fn is_forbidden(c: char) -> bool {
    c <= '\u{1F}' || ('\u{7F}'..='\u{9F}').contains(&c) || is_format(c)
}

/// The first forbidden character of `s` and its byte offset, if any.
pub fn first_forbidden(s: &str) -> Option<(usize, char)> {
    // ASCII, the common case, needs no decoding.
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b < 0x20 || b == 0x7F {
                return Some((i, char::from(b)));
            }
            i += 1;
            continue;
        }
        // `i` is a char boundary: every earlier byte was ASCII or a whole
        // char.
        let c = s[i..].chars().next()?;
        if is_forbidden(c) {
            return Some((i, c));
        }
        i += c.len_utf8();
    }
    None
}

/// Whether `s` keeps the draft's character rule.
pub fn is_valid(s: &str) -> bool {
    first_forbidden(s).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_disjoint() {
        for w in FORMAT.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
    }

    #[test]
    fn known_format_points_and_their_neighbours() {
        let format = [
            0xAD, 0x600, 0x605, 0x61C, 0x180E, 0x200B, 0x200D, 0x200E, 0x200F, 0x202A, 0x202E,
            0x2060, 0x2064, 0x2066, 0x206F, 0xFEFF, 0xFFF9, 0xFFFB, 0x13430, 0x1343F, 0xE0001,
            0xE0020, 0xE007F,
        ];
        let not_format = [
            0x20, 0x41, 0xAC, 0xAE, 0x5FF, 0x606, 0x200A, 0x2010, 0x2029, 0x202F, 0x2065, 0x2070,
            0xFEFE, 0xFF00, 0xFFF8, 0xFFFC, 0x1342F, 0x13440, 0xE0000, 0xE0002, 0xE001F, 0xE0080,
            0x10FFFF,
        ];
        for c in format {
            assert!(is_format(char::from_u32(c).unwrap()), "U+{c:04X}");
        }
        for c in not_format {
            assert!(!is_format(char::from_u32(c).unwrap()), "U+{c:04X}");
        }
    }

    #[test]
    fn the_rule_on_strings() {
        for ok in [
            "",
            "https://example.com/books/1",
            "urn:uuid:e1ee88e2",
            "caf\u{e9}/\u{1F600}",
            " ~",
            "\u{A0}",
        ] {
            assert!(is_valid(ok), "{ok:?}");
        }
        for (bad, at) in [
            ("\0", 0),
            ("a\tb", 1),
            ("a\nb", 1),
            ("x\u{7F}", 1),
            ("\u{e9}\u{80}", 2),
            ("\u{9F}", 0),
            ("a\u{200B}b", 1),
            ("/\u{202E}gpj.exe", 1),
            ("\u{FEFF}bom", 0),
            ("tag\u{E0041}", 3),
        ] {
            assert_eq!(first_forbidden(bad).map(|(i, _)| i), Some(at), "{bad:?}");
            assert!(!is_valid(bad));
        }
    }

    /// The whole table against Python's `unicodedata` on this machine:
    /// every code point Python knows as assigned must be `Cf` in the
    /// table exactly when Python says so, and the table's `Cf` code points
    /// unassigned in Python's (older) Unicode must be later additions, not
    /// mistakes. Fails, loudly, without python3: a check that cannot run
    /// must not pass.
    #[test]
    fn table_agrees_with_python_unicodedata() {
        let script = r#"
import unicodedata as u
def ranges(pred):
    out, start = [], None
    for c in range(0x110000):
        p = pred(c)
        if p and start is None: start = c
        if not p and start is not None: out.append((start, c - 1)); start = None
    if start is not None: out.append((start, 0x10FFFF))
    return " ".join("%x-%x" % r for r in out)
print(u.unidata_version)
print(ranges(lambda c: u.category(chr(c)) == "Cf"))
print(ranges(lambda c: u.category(chr(c)) == "Cn"))
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .expect("python3 is needed to check the Cf table against unicodedata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let version = lines.next().unwrap();
        let parse = |line: &str| -> Vec<(u32, u32)> {
            line.split_whitespace()
                .map(|r| {
                    let (a, b) = r.split_once('-').unwrap();
                    (
                        u32::from_str_radix(a, 16).unwrap(),
                        u32::from_str_radix(b, 16).unwrap(),
                    )
                })
                .collect()
        };
        let python_cf = parse(lines.next().unwrap());
        let unassigned = parse(lines.next().unwrap());
        let inside = |set: &[(u32, u32)], c: u32| set.iter().any(|&(a, b)| (a..=b).contains(&c));
        let newer = version_tuple(version) > version_tuple(UNICODE_VERSION);
        let mut checked = 0;
        for c in (0..0x110000u32).filter_map(char::from_u32) {
            let cp = u32::from(c);
            let ours = is_format(c);
            let theirs = inside(&python_cf, cp);
            if theirs {
                assert!(
                    ours,
                    "U+{cp:04X} is Cf in Unicode {version}: regenerate the table (the draft lets a hub reject later Cf code points)"
                );
            } else if ours {
                let later = ADDED_SINCE_14.iter().any(|&(since, a, b)| {
                    (a..=b).contains(&cp) && version_tuple(since) > version_tuple(version)
                });
                assert!(
                    !newer && later && inside(&unassigned, cp),
                    "U+{cp:04X} is in the table but not Cf in Unicode {version}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 0x110000 - 0x800);
    }

    /// `Cf` code points assigned after Unicode 14.0.0 (Python 3.11's), by
    /// the version that assigned them.
    const ADDED_SINCE_14: &[(&str, u32, u32)] = &[("15.0.0", 0x13439, 0x1343F)];

    fn version_tuple(v: &str) -> Vec<u32> {
        v.split('.').map(|p| p.parse().unwrap()).collect()
    }
}
