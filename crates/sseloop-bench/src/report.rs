//! The report: sections of named values, printed as aligned text or, with
//! `--json`, as one object of objects with the same names (times in
//! microseconds under keys ending `_us`, memory in KiB under `_kib`).

use std::fmt::Write as _;

/// One reported value.
pub(crate) enum Val {
    Int(u64),
    /// A number and the decimals to print.
    Num(f64, usize),
    /// Nanoseconds: text picks the unit; JSON gives microseconds, key + `_us`.
    Time(u64),
    /// KiB: text gives MiB; JSON gives KiB, key + `_kib`.
    Kib(u64),
    Text(String),
    /// Not measured: left out of the text, `null` in JSON.
    Null,
}

/// The report: sections of named values, printed as text or as one JSON
/// object of objects with the same names.
#[derive(Default)]
pub(crate) struct Report(Vec<(&'static str, Section)>);

#[derive(Default)]
pub(crate) struct Section(Vec<(&'static str, Val)>);

impl Section {
    pub(crate) fn put(&mut self, key: &'static str, val: Val) -> &mut Self {
        self.0.push((key, val));
        self
    }
}

impl Report {
    pub(crate) fn section(&mut self, name: &'static str) -> &mut Section {
        self.0.push((name, Section::default()));
        &mut self.0.last_mut().expect("pushed").1
    }

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for (section, fields) in &self.0 {
            let mut line = format!("{:<12}", format!("{section}:"));
            for (key, val) in &fields.0 {
                // `_` reads as a space, or as a point between digits (p99_9).
                let b = key.as_bytes();
                let key: String = (0..b.len())
                    .map(|i| match b[i] {
                        b'_' if b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit() => '.',
                        b'_' => ' ',
                        c => c as char,
                    })
                    .collect();
                let val = match val {
                    Val::Int(v) => v.to_string(),
                    Val::Num(v, prec) => format!("{v:.prec$}"),
                    Val::Time(v) => fmt_ns(*v),
                    Val::Kib(v) => format!("{:.1} MiB", *v as f64 / 1024.0),
                    Val::Text(s) => s.clone(),
                    Val::Null => continue,
                };
                let sep = if line.ends_with(' ') { "" } else { ", " };
                let _ = write!(line, "{sep}{key} {val}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(crate) fn json(&self) -> String {
        let mut out = String::new();
        for (section, fields) in &self.0 {
            let _ = write!(out, ",\"{section}\":{{");
            let mut sep = "";
            for (key, val) in &fields.0 {
                let _ = match val {
                    Val::Int(v) => write!(out, "{sep}\"{key}\":{v}"),
                    Val::Num(v, prec) if v.is_finite() => write!(out, "{sep}\"{key}\":{v:.prec$}"),
                    Val::Time(v) => write!(out, "{sep}\"{key}_us\":{:.3}", *v as f64 / 1e3),
                    Val::Kib(v) => write!(out, "{sep}\"{key}_kib\":{v}"),
                    Val::Text(s) => write!(out, "{sep}\"{key}\":\"{}\"", json_escape(s)),
                    Val::Num(..) | Val::Null => write!(out, "{sep}\"{key}\":null"),
                };
                sep = ",";
            }
            out.push('}');
        }
        format!("{{{}}}", out.strip_prefix(',').unwrap_or(&out))
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("String"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_ns(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} ns"),
        1_000..10_000 => format!("{:.2} µs", n as f64 / 1e3),
        10_000..1_000_000 => format!("{:.1} µs", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", n as f64 / 1e6),
        _ => format!("{:.2} s", n as f64 / 1e9),
    }
}

/// A text value, or not measured when there is none.
pub(crate) fn text(s: &Option<String>) -> Val {
    s.clone().map_or(Val::Null, Val::Text)
}
