//! Build steps that keep the release binary small (under 1 MiB, for small
//! devices) without touching what it does:
//!
//! - The two pages it serves (`src/inspector.html`, `src/lab.html`) are
//!   compressed here into gzip files in `OUT_DIR` and embedded that way
//!   (`http::page`): 65 KB of HTML become 24 KB. They are compressed with
//!   fixed Huffman codes only, so that the server's own small decoder
//!   (`http::inflate`) gives the page back to a client that does not take
//!   gzip.

use std::path::Path;
use std::{env, fs};

use miniz_oxide::deflate::core::{
    CompressionStrategy, CompressorOxide, TDEFLFlush, TDEFLStatus, compress,
    create_comp_flags_from_zip_params,
};

fn main() {
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for page in ["inspector.html", "lab.html"] {
        let source = Path::new("src").join(page);
        println!("cargo::rerun-if-changed={}", source.display());
        let text = fs::read(&source).expect("the page is in src/");
        let gzip = gzip(&text);
        fs::write(Path::new(&out_dir).join(format!("{page}.gz")), gzip)
            .expect("OUT_DIR is writable");
    }
    println!("cargo::rerun-if-changed=build.rs");
}

/// `data` as a gzip member (RFC 1952) whose deflate blocks all use the
/// fixed codes.
fn gzip(data: &[u8]) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(10, -15, CompressionStrategy::Fixed as i32);
    let mut compressor = CompressorOxide::new(flags);
    // ID1 ID2, deflate, no flags, no time, best compression, Unix.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    let mut input = data;
    let mut buf = vec![0; 64 << 10];
    loop {
        let (status, taken, made) = compress(&mut compressor, input, &mut buf, TDEFLFlush::Finish);
        out.extend_from_slice(&buf[..made]);
        input = &input[taken..];
        match status {
            TDEFLStatus::Done => break,
            TDEFLStatus::Okay => {}
            other => panic!("deflate failed: {other:?}"),
        }
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The CRC-32 of gzip's trailer (reflected, polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
