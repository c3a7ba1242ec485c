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
    /// Values in order: a JSON array; text joins plain values with spaces
    /// and gives each object a line of its own under its section's line,
    /// labelled with the key less its plural `s` (`threads` → `thread:`).
    List(Vec<Val>),
    /// Named values: a JSON object, text `key value, …`.
    Obj(Section),
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
            let mut lines = Vec::new();
            let line = fields.text_line(format!("{:<12}", format!("{section}:")), &mut lines);
            out.push_str(line.trim_end());
            out.push('\n');
            for line in lines {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out
    }

    pub(crate) fn json(&self) -> String {
        let mut out = String::new();
        for (section, fields) in &self.0 {
            let _ = write!(out, ",\"{section}\":");
            fields.json(&mut out);
        }
        format!("{{{}}}", out.strip_prefix(',').unwrap_or(&out))
    }
}

impl Section {
    /// Appends `key value` pairs to `line`; each object of a list becomes
    /// a line of its own in `below`.
    fn text_line(&self, mut line: String, below: &mut Vec<String>) -> String {
        for (key, val) in &self.0 {
            let val = match val {
                Val::List(items) if items.iter().any(|v| matches!(v, Val::Obj(_))) => {
                    let label = key.strip_suffix('s').unwrap_or(key);
                    for item in items {
                        let mut nested = Vec::new();
                        let head = format!("{:<12}", format!("  {}:", text_key(label)));
                        let text = match item {
                            Val::Obj(obj) => obj.text_line(head, &mut nested),
                            other => head + &text_value(other).unwrap_or_default(),
                        };
                        below.push(text);
                        below.extend(nested.into_iter().map(|l| format!("  {l}")));
                    }
                    continue;
                }
                val => match text_value(val) {
                    Some(v) => v,
                    None => continue,
                },
            };
            let sep = if line.ends_with(' ') { "" } else { ", " };
            let _ = write!(line, "{sep}{} {val}", text_key(key));
        }
        line
    }

    fn json(&self, out: &mut String) {
        out.push('{');
        let mut sep = "";
        for (key, val) in &self.0 {
            let name = match val {
                Val::Time(_) => format!("{key}_us"),
                Val::Kib(_) => format!("{key}_kib"),
                _ => key.to_string(),
            };
            let _ = write!(out, "{sep}\"{name}\":");
            json_value(val, out);
            sep = ",";
        }
        out.push('}');
    }
}

/// `_` reads as a space, or as a point between digits (p99_9).
fn text_key(key: &str) -> String {
    let b = key.as_bytes();
    (0..b.len())
        .map(|i| match b[i] {
            b'_' if i > 0
                && i + 1 < b.len()
                && b[i - 1].is_ascii_digit()
                && b[i + 1].is_ascii_digit() =>
            {
                '.'
            }
            b'_' => ' ',
            c => c as char,
        })
        .collect()
}

/// A value as text; `None` for one not measured.
fn text_value(val: &Val) -> Option<String> {
    Some(match val {
        Val::Int(v) => v.to_string(),
        Val::Num(v, prec) => format!("{v:.prec$}"),
        Val::Time(v) => fmt_ns(*v),
        Val::Kib(v) => format!("{:.1} MiB", *v as f64 / 1024.0),
        Val::Text(s) => s.clone(),
        Val::List(items) => {
            let items: Vec<String> = items.iter().filter_map(text_value).collect();
            items.join(" ")
        }
        Val::Obj(obj) => obj.text_line(String::new(), &mut Vec::new()),
        Val::Null => return None,
    })
}

fn json_value(val: &Val, out: &mut String) {
    let _ = match val {
        Val::Int(v) => write!(out, "{v}"),
        Val::Num(v, prec) if v.is_finite() => write!(out, "{v:.prec$}"),
        Val::Time(v) => write!(out, "{:.3}", *v as f64 / 1e3),
        Val::Kib(v) => write!(out, "{v}"),
        Val::Text(s) => write!(out, "\"{}\"", json_escape(s)),
        Val::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(item, out);
            }
            out.push(']');
            Ok(())
        }
        Val::Obj(obj) => {
            obj.json(out);
            Ok(())
        }
        Val::Num(..) | Val::Null => write!(out, "null"),
    };
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
