//! Recorded operations and the history file format.
//!
//! A history file is UTF-8 text, one operation per line; `#` starts a comment line. Fields
//! are separated by single spaces; keys and values are tokens without whitespace:
//!
//! ```text
//! CLIENT INVOKE_NS COMPLETE_NS|- KEY get   -     -            OUTCOME
//! CLIENT INVOKE_NS COMPLETE_NS|- KEY put   VALUE MIN_VERSION|- OUTCOME
//! CLIENT INVOKE_NS COMPLETE_NS|- KEY del   -     -            OUTCOME
//!
//! OUTCOME = fail | unknown | ok value VALUE VERSION | ok absent | ok written VERSION
//!         | ok conflict | ok deleted | ok notfound
//! ```
//!
//! Times are nanoseconds on one monotonic clock. An `unknown` operation's completion time,
//! if written, is when the client gave up; the checker ignores it.

use std::fmt;

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the current value and version.
    Get,
    /// Write `value`; with `min_version`, only if the key is absent or its current version
    /// is below `min_version` (seed B's "I write a version newer than yours").
    Put {
        /// The value written.
        value: String,
        /// The version the write claims to be at least.
        min_version: Option<u64>,
    },
    /// Remove the key and its history.
    Delete,
}

/// A definite answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// A read found `value` at `version`.
    Value {
        /// The value read.
        value: String,
        /// Its version.
        version: u64,
    },
    /// A read found no value.
    Absent,
    /// A put took effect as `version`.
    Written {
        /// The version the write created.
        version: u64,
    },
    /// A conditional put was refused (409): the current version was not below its version.
    Conflict,
    /// A delete removed the key.
    Deleted,
    /// A delete found no key (404).
    NotFound,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A definite answer.
    Ok(Output),
    /// Certainly not applied (for example refused before it was proposed).
    Fail,
    /// May or may not have been applied.
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client (process) that issued it; one client runs one operation at a time.
    pub client: u32,
    /// When it was invoked, in nanoseconds.
    pub invoke: u64,
    /// When its answer arrived, in nanoseconds (`None` if it never did).
    pub complete: Option<u64>,
    /// The key.
    pub key: String,
    /// What was asked.
    pub input: Input,
    /// How it ended.
    pub outcome: Outcome,
}

/// A recorded history: every client's operations, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The operations.
    pub ops: Vec<Op>,
}

/// A history file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history line {line}: {reason}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.client, self.invoke)?;
        match self.complete {
            Some(t) => write!(f, "{t} ")?,
            None => write!(f, "- ")?,
        }
        write!(f, "{} ", self.key)?;
        match &self.input {
            Input::Get => write!(f, "get - -")?,
            Input::Put { value, min_version } => match min_version {
                Some(v) => write!(f, "put {value} {v}")?,
                None => write!(f, "put {value} -")?,
            },
            Input::Delete => write!(f, "del - -")?,
        }
        match &self.outcome {
            Outcome::Fail => write!(f, " fail"),
            Outcome::Unknown => write!(f, " unknown"),
            Outcome::Ok(o) => match o {
                Output::Value { value, version } => write!(f, " ok value {value} {version}"),
                Output::Absent => write!(f, " ok absent"),
                Output::Written { version } => write!(f, " ok written {version}"),
                Output::Conflict => write!(f, " ok conflict"),
                Output::Deleted => write!(f, " ok deleted"),
                Output::NotFound => write!(f, " ok notfound"),
            },
        }
    }
}

impl History {
    /// Adds an operation.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The history as a file's text. Keys and values must be tokens without whitespace;
    /// [`History::parse`] rejects what does not round-trip.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# strata history v1\n");
        for op in &self.ops {
            out.push_str(&op.to_string());
            out.push('\n');
        }
        out
    }

    /// Reads a history file's text.
    pub fn parse(text: &str) -> Result<History, ParseError> {
        let mut h = History::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            h.ops.push(parse_op(line).map_err(|reason| ParseError {
                line: i + 1,
                reason,
            })?);
        }
        Ok(h)
    }
}

fn num(s: &str, what: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not a whole number"))
}

fn parse_op(line: &str) -> Result<Op, String> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() < 8 {
        return Err(format!("{} fields, expected at least 8", f.len()));
    }
    if f.iter().any(|t| !token_ok(t)) {
        return Err("empty field (fields are separated by one space)".into());
    }
    let client = u32::try_from(num(f[0], "client")?).map_err(|_| "client too large")?;
    let invoke = num(f[1], "invoke time")?;
    let complete = match f[2] {
        "-" => None,
        t => Some(num(t, "completion time")?),
    };
    let key = f[3].to_string();
    let input = match (f[4], f[5], f[6]) {
        ("get", "-", "-") => Input::Get,
        ("del", "-", "-") => Input::Delete,
        ("put", value, min) => Input::Put {
            value: value.to_string(),
            min_version: match min {
                "-" => None,
                v => Some(num(v, "min version")?),
            },
        },
        (op, _, _) => return Err(format!("unknown operation {op:?}")),
    };
    let rest = &f[7..];
    let outcome = match rest {
        ["fail"] => Outcome::Fail,
        ["unknown"] => Outcome::Unknown,
        ["ok", "value", v, n] => Outcome::Ok(Output::Value {
            value: (*v).to_string(),
            version: num(n, "version")?,
        }),
        ["ok", "absent"] => Outcome::Ok(Output::Absent),
        ["ok", "written", n] => Outcome::Ok(Output::Written {
            version: num(n, "version")?,
        }),
        ["ok", "conflict"] => Outcome::Ok(Output::Conflict),
        ["ok", "deleted"] => Outcome::Ok(Output::Deleted),
        ["ok", "notfound"] => Outcome::Ok(Output::NotFound),
        _ => return Err(format!("bad outcome {:?}", rest.join(" "))),
    };
    if let (Some(c), Outcome::Ok(_)) = (complete, &outcome)
        && c < invoke
    {
        return Err("completed before it was invoked".into());
    }
    if complete.is_none() && matches!(outcome, Outcome::Ok(_)) {
        return Err("an ok operation needs a completion time".into());
    }
    Ok(Op {
        client,
        invoke,
        complete,
        key,
        input,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_round_trips_through_its_text() {
        let text = "# strata history v1\n\
                    1 10 20 k get - - ok value a 3\n\
                    2 11 - k put b 4 unknown\n\
                    3 12 30 k put c - ok written 5\n\
                    1 25 26 k del - - ok notfound\n\
                    2 40 41 j get - - ok absent\n\
                    2 42 43 j put x 2 ok conflict\n\
                    2 44 45 j del - - ok deleted\n\
                    3 50 51 j put y - fail\n";
        let h = History::parse(text).unwrap();
        assert_eq!(h.ops.len(), 8);
        assert_eq!(h.to_text(), text);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "1 10 20 k get - -",
            "1 10 20 k get - - ok",
            "x 10 20 k get - - ok absent",
            "1 10 5 k get - - ok absent",
            "1 10 - k get - - ok absent",
            "1 10 20 k frob - - ok absent",
            "1 10 20 k put v zz ok written 1",
            "1 10 20 k get - - ok value a",
            "1 10 20  k get - - ok absent",
            "99999999999 10 20 k get - - ok absent",
        ] {
            let e = History::parse(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
        }
    }
}
