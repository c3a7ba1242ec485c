//! Build steps that keep the release binary small (under 1 MiB, for small
//! devices) without touching what it does:
//!
//! - The two pages it serves (`src/inspector.html`, `src/lab.html`) are
//!   compressed here into gzip files in `OUT_DIR` and embedded that way
//!   (`http::page`): 65 KB of HTML become 19 KB. The notes for their
//!   readers at the top of each file (an HTML comment) are left out; the
//!   lab's small decoder (`sseloop_lab::inflate`) gives a page back to a
//!   client that does not take gzip.
//! - On glibc 2.36 or later, the binaries link with packed relative
//!   relocations (`DT_RELR`): 18 KB less of relocation tables, same
//!   addresses at run time (position-independent, ASLR as before). The
//!   linker marks the binary as needing glibc's `GLIBC_ABI_DT_RELR`, so it
//!   is done only when the glibc it is built on has it.
//! - Where the binaries link with rust-lld (x86_64 Linux with Rust 1.90 or
//!   later, no linker of the user's choosing), identical functions are
//!   folded into one (`--icf=all`): 6.5 KB less. Rust promises no
//!   distinct addresses for distinct functions (rustc marks every function
//!   `unnamed_addr`), and lld folds no data.
//! - There too, a release binary (`panic = "abort"`) is linked without
//!   unwind tables (`.eh_frame`, its index, and the landing pads' tables):
//!   72 KB. Nothing in it unwinds: a panic aborts, and only the panic
//!   message's backtrace reads them, which in this stripped binary has
//!   no names to show (with `RUST_BACKTRACE=1` it shows none; with `full`
//!   it now shows the first frame's address only). Gone with them: a
//!   debugger's or `perf --call-graph dwarf`'s unwinding of the release
//!   binary; build with `--profile dev` (or a profile of your own) for
//!   that. A profile inheriting from release that unwinds would need it
//!   back (`PROFILE` says release for it too).

use std::path::Path;
use std::process::Command;
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
        let text = fs::read_to_string(&source).expect("the page is in src/");
        let gzip = gzip(without_notes(&text).as_bytes());
        fs::write(Path::new(&out_dir).join(format!("{page}.gz")), gzip)
            .expect("OUT_DIR is writable");
    }
    println!("cargo::rerun-if-changed=build.rs");
    if glibc_runs_relr() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if links_with_rust_lld() {
        println!("cargo::rustc-link-arg-bins=-Wl,--icf=all");
        if env::var("PROFILE").as_deref() == Ok("release") {
            // Added to lld's own layout (INSERT), not in place of it.
            let script = Path::new(&out_dir).join("no-unwind-tables.ld");
            let text = "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) \
                        *(.gcc_except_table .gcc_except_table.*) } } INSERT AFTER .text;\n";
            fs::write(&script, text).expect("OUT_DIR is writable");
            println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
        }
    }
}

/// `page` without its HTML comments that begin a line: the notes for the
/// file's readers.
fn without_notes(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    while let Some(at) = rest.find("\n<!--") {
        out.push_str(&rest[..=at]);
        let end = rest[at..].find("-->\n").expect("a comment ends") + at + 4;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `data` as a gzip member (RFC 1952).
fn gzip(data: &[u8]) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(10, -15, CompressionStrategy::Default as i32);
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

/// Whether the binaries may use `DT_RELR`: built for the machine they are
/// built on (Linux, glibc), whose glibc is 2.36 or later.
fn glibc_runs_relr() -> bool {
    let var = |name| env::var(name).unwrap_or_default();
    if var("TARGET") != var("HOST")
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return false;
    }
    // "glibc 2.36"
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().strip_prefix("glibc ").unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    out.status.success() && (major, minor) >= (2, 36)
}

/// Whether the binaries link with rust-lld: Rust 1.90 made it the linker
/// of x86_64 Linux (glibc), unless a linker was chosen (cargo's `linker`
/// setting, or rustc flags that name one).
fn links_with_rust_lld() -> bool {
    let var = |name| env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_ARCH") != "x86_64"
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || env::var_os("RUSTC_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link")
    {
        return false;
    }
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split(' ').nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    out.status.success() && (major, minor) >= (1, 90)
}
