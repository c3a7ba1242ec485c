//! A component's part list as a Thompson automaton, run by simulating
//! every state at once (a Pike VM without captures): whatever the pattern
//! and the input, each byte of input visits each state at most once, so a
//! match costs O(states × input) and no pattern can make it backtrack.
//!
//! The standard compiles parts to a JavaScript regular expression
//! anchored at both ends; matching only asks whether the whole component
//! matches (no captures are reported), so lazy and greedy quantifiers are
//! the same language and an automaton decides it exactly. It runs on
//! bytes: canonicalized components are ASCII (the URL parser
//! percent-encodes the rest), and the only classes, "any" and "any but
//! the ASCII delimiter", treat a non-ASCII character's bytes alike.

use super::parts::{Modifier, Part, PartKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inst {
    /// This byte.
    Byte(u8),
    /// Any byte but this one.
    NotByte(u8),
    /// Any byte.
    Any,
    /// Go on at both.
    Split(u32, u32),
    /// Go on there.
    Jump(u32),
    /// The input may end here.
    Match,
}

/// A compiled component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insts: Vec<Inst>,
}

/// What a match cost: states visited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steps(pub u64);

impl Program {
    /// Compiles `parts` with `delimiter` as the segment delimiter.
    pub fn compile(parts: &[Part], delimiter: Option<u8>) -> Program {
        let mut c = Compiler {
            insts: Vec::new(),
            delimiter,
        };
        for part in parts {
            c.part(part);
        }
        c.insts.push(Inst::Match);
        Program { insts: c.insts }
    }

    /// How many states it has.
    pub fn len(&self) -> usize {
        self.insts.len()
    }

    /// Whether `input` matches, adding what it cost to `steps`.
    pub fn matches(&self, input: &[u8], steps: &mut Steps) -> bool {
        let n = self.insts.len();
        let mut current = SparseSet::new(n);
        let mut next = SparseSet::new(n);
        let mut stack = Vec::new();
        self.add(&mut current, 0, &mut stack, steps);
        for &b in input {
            if current.is_empty() {
                return false;
            }
            for i in 0..current.len() {
                let pc = current.dense[i];
                steps.0 += 1;
                let go = match self.insts[pc as usize] {
                    Inst::Byte(x) => x == b,
                    Inst::NotByte(x) => x != b,
                    Inst::Any => true,
                    _ => false,
                };
                if go {
                    self.add(&mut next, pc + 1, &mut stack, steps);
                }
            }
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
        current
            .dense
            .iter()
            .any(|&pc| self.insts[pc as usize] == Inst::Match)
    }

    /// Adds `pc` and every state its jumps and splits reach.
    fn add(&self, set: &mut SparseSet, pc: u32, stack: &mut Vec<u32>, steps: &mut Steps) {
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            steps.0 += 1;
            if !set.insert(pc) {
                continue;
            }
            match self.insts[pc as usize] {
                Inst::Jump(to) => stack.push(to),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                _ => {}
            }
        }
    }
}

/// A set of states with O(1) insert, membership and clear.
struct SparseSet {
    dense: Vec<u32>,
    sparse: Vec<u32>,
}

impl SparseSet {
    fn new(n: usize) -> SparseSet {
        SparseSet {
            dense: Vec::with_capacity(n),
            sparse: vec![0; n],
        }
    }

    fn len(&self) -> usize {
        self.dense.len()
    }

    fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    fn insert(&mut self, v: u32) -> bool {
        let i = self.sparse[v as usize] as usize;
        if i < self.dense.len() && self.dense[i] == v {
            return false;
        }
        self.sparse[v as usize] = self.dense.len() as u32;
        self.dense.push(v);
        true
    }

    fn clear(&mut self) {
        self.dense.clear();
    }
}

struct Compiler {
    insts: Vec<Inst>,
    delimiter: Option<u8>,
}

/// A piece of a regular expression, to be emitted in place.
#[derive(Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    /// The group's own expression: the segment or the full wildcard.
    Group(PartKind),
}

impl Compiler {
    fn pc(&self) -> u32 {
        self.insts.len() as u32
    }

    fn emit(&mut self, pieces: &[Piece]) {
        for piece in pieces {
            match *piece {
                Piece::Text(t) => self.insts.extend(t.bytes().map(Inst::Byte)),
                Piece::Group(PartKind::Segment) => {
                    // [^d]+ : one, then a loop back.
                    let one = self.pc();
                    self.insts.push(self.segment_byte());
                    let after = self.pc() + 1;
                    self.insts.push(Inst::Split(one, after));
                }
                Piece::Group(_) => self.star(&[Piece::Text("")], true),
            }
        }
    }

    fn segment_byte(&self) -> Inst {
        self.delimiter.map_or(Inst::Any, Inst::NotByte)
    }

    /// `(?:pieces)*`; `any` means the pieces are `.` (the full wildcard).
    fn star(&mut self, pieces: &[Piece], any: bool) {
        let split = self.pc();
        self.insts.push(Inst::Split(0, 0));
        let body = self.pc();
        if any {
            self.insts.push(Inst::Any);
        } else {
            self.emit(pieces);
        }
        self.insts.push(Inst::Jump(split));
        let after = self.pc();
        self.insts[split as usize] = Inst::Split(body, after);
    }

    /// `(?:pieces)?`
    fn optional(&mut self, pieces: &[Piece]) {
        let split = self.pc();
        self.insts.push(Inst::Split(0, 0));
        self.emit(pieces);
        let after = self.pc();
        self.insts[split as usize] = Inst::Split(split + 1, after);
    }

    /// `(?:pieces)+`
    fn plus(&mut self, pieces: &[Piece]) {
        let start = self.pc();
        self.emit(pieces);
        let after = self.pc() + 1;
        self.insts.push(Inst::Split(start, after));
    }

    fn modified(&mut self, pieces: &[Piece], modifier: Modifier) {
        match modifier {
            Modifier::None => self.emit(pieces),
            Modifier::Optional => self.optional(pieces),
            Modifier::ZeroOrMore => self.star(pieces, false),
            Modifier::OneOrMore => self.plus(pieces),
        }
    }

    /// One part, as the standard's "generate a regular expression" writes
    /// it.
    fn part(&mut self, part: &Part) {
        let group = Piece::Group(part.kind);
        let (prefix, suffix) = (Piece::Text(&part.prefix), Piece::Text(&part.suffix));
        match part.kind {
            PartKind::Fixed => self.modified(&[Piece::Text(&part.value)], part.modifier),
            _ if part.prefix.is_empty() && part.suffix.is_empty() => {
                self.modified(&[group], part.modifier)
            }
            _ => match part.modifier {
                Modifier::None | Modifier::Optional => {
                    self.modified(&[prefix, group, suffix], part.modifier)
                }
                repeat => {
                    // (?:P(R(?:SPR)*)S) then `?` for zero or more.
                    let split = self.pc();
                    if repeat == Modifier::ZeroOrMore {
                        self.insts.push(Inst::Split(0, 0));
                    }
                    self.emit(&[prefix, group]);
                    self.star(&[suffix, prefix, group], false);
                    self.emit(&[suffix]);
                    if repeat == Modifier::ZeroOrMore {
                        let after = self.pc();
                        self.insts[split as usize] = Inst::Split(split + 1, after);
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(kind: PartKind, value: &str, modifier: Modifier, prefix: &str, suffix: &str) -> Part {
        Part {
            kind,
            value: value.into(),
            modifier,
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    fn run(parts: &[Part], delimiter: Option<u8>, input: &str) -> bool {
        Program::compile(parts, delimiter).matches(input.as_bytes(), &mut Steps::default())
    }

    #[test]
    fn shapes() {
        use Modifier::*;
        use PartKind::*;
        let fixed = [part(Fixed, "/a", Modifier::None, "", "")];
        assert!(run(&fixed, Some(b'/'), "/a") && !run(&fixed, Some(b'/'), "/ab"));
        let seg = [part(Segment, "", Modifier::None, "/", "")];
        assert!(
            run(&seg, Some(b'/'), "/x")
                && !run(&seg, Some(b'/'), "/")
                && !run(&seg, Some(b'/'), "/x/y")
        );
        let opt = [part(Segment, "", Optional, "/", "")];
        assert!(
            run(&opt, Some(b'/'), "") && run(&opt, Some(b'/'), "/x") && !run(&opt, Some(b'/'), "/")
        );
        let plus = [part(Segment, "", OneOrMore, "/", "")];
        assert!(
            run(&plus, Some(b'/'), "/a/b/c")
                && !run(&plus, Some(b'/'), "")
                && !run(&plus, Some(b'/'), "/a//b")
        );
        let star = [part(Segment, "", ZeroOrMore, "/", "")];
        assert!(run(&star, Some(b'/'), "") && run(&star, Some(b'/'), "/a/b"));
        let suffix = [part(Segment, "", OneOrMore, "<", ">")];
        assert!(run(&suffix, Some(b'/'), "<a><b>") && run(&suffix, Some(b'/'), "<a>"));
        assert!(!run(&suffix, Some(b'/'), "<a><b") && !run(&suffix, Some(b'/'), "a>"));
        // The group takes any non-delimiter byte, `>` included.
        assert!(run(&suffix, Some(b'/'), "<a>b>") && !run(&suffix, Some(b'/'), "<a/b>"));
        let full = [part(Full, "", Modifier::None, "", "")];
        assert!(run(&full, Some(b'/'), "") && run(&full, Some(b'/'), "/a/b"));
        let full_star = [part(Full, "", ZeroOrMore, "", "")];
        assert!(run(&full_star, Option::None, "xyz"));
        let no_delim = [part(Segment, "", Modifier::None, "", "")];
        assert!(run(&no_delim, Option::None, "a.b/c") && !run(&no_delim, Option::None, ""));
        let fixed_opt = [
            part(Fixed, "s", Optional, "", ""),
            part(Fixed, "://", Modifier::None, "", ""),
        ];
        assert!(
            run(&fixed_opt, Option::None, "s://")
                && run(&fixed_opt, Option::None, "://")
                && !run(&fixed_opt, Option::None, "ss://")
        );
        let fixed_plus = [part(Fixed, "ab", OneOrMore, "", "")];
        assert!(run(&fixed_plus, Option::None, "ababab") && !run(&fixed_plus, Option::None, "aba"));
    }
}
