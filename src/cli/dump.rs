//! `strata dump` / `strata load`: every retained version of every key as JSON lines, and a
//! new store built from them with the same version numbers (`docs/format.md`, "Dump").
//!
//! ```text
//! {"format":"strata-dump","version":1,"seqno":1234}
//! {"key":"user:1","version":17,"value":"Alice"}
//! {"key":"user:1","version":9,"deleted":true}
//! {"key_b64":"AAH/","version":5,"value_b64":"3q2+7w=="}
//! {"end":true,"versions":3}
//! ```
//!
//! Keys ascend bytewise; each key's versions come newest first. A key or value that is not
//! UTF-8 is written as `key_b64` / `value_b64` (standard base64 with padding). The end line
//! makes a truncated dump detectable.

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{CliError, exit, json_bytes};
use crate::cursor::Cursor;
use crate::ingest::IngestVersion;
use crate::{Db, SeqNo, key};

/// What a dump held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    /// The seqno the dump holds every write up to.
    pub seqno: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Versions (tombstones included).
    pub versions: u64,
}

/// Writes every retained version of every key of `db`, as of now, to `out`;
/// `progress(versions)` is called as it goes.
pub fn dump(
    db: &Db,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<DumpSummary, CliError> {
    let (state, seq) = db.view();
    writeln!(
        out,
        "{}",
        json!({"format": "strata-dump", "version": 1, "seqno": seq})
    )?;
    let mut summary = DumpSummary {
        seqno: seq,
        keys: 0,
        versions: 0,
    };
    let mut c = state.cursor();
    c.seek_to_first();
    let mut last_key: Option<Vec<u8>> = None;
    while c.valid() {
        let k = c.key();
        let p = key::parse(k)
            .ok_or_else(|| CliError::new(exit::DAMAGED, "malformed internal key in the store"))?;
        if p.seq <= seq {
            let mut o = Map::new();
            json_bytes(&mut o, "key", p.user_key);
            o.insert("version".into(), p.seq.into());
            match p.kind {
                key::Kind::Put => json_bytes(&mut o, "value", &c.value()),
                key::Kind::Delete => {
                    o.insert("deleted".into(), true.into());
                }
            }
            writeln!(out, "{}", Value::Object(o))?;
            if last_key.as_deref() != Some(p.user_key) {
                summary.keys += 1;
                last_key = Some(p.user_key.to_vec());
            }
            summary.versions += 1;
            if summary.versions.is_multiple_of(4096) {
                progress(summary.versions);
            }
        }
        c.next();
    }
    c.status()?;
    writeln!(
        out,
        "{}",
        json!({"end": true, "versions": summary.versions})
    )?;
    Ok(summary)
}

fn bad(line: u64, what: impl std::fmt::Display) -> CliError {
    CliError::new(exit::FAILED, format!("dump line {line}: {what}"))
}

/// The bytes of field `name` (a string) or `name_b64` (base64).
fn field(o: &Map<String, Value>, name: &str, line: u64) -> Result<Option<Bytes>, CliError> {
    if let Some(v) = o.get(name) {
        let s = v
            .as_str()
            .ok_or_else(|| bad(line, format!("{name} is not a string")))?;
        return Ok(Some(Bytes::copy_from_slice(s.as_bytes())));
    }
    if let Some(v) = o.get(&format!("{name}_b64")) {
        let s = v
            .as_str()
            .ok_or_else(|| bad(line, format!("{name}_b64 is not a string")))?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| bad(line, format!("{name}_b64: {e}")))?;
        return Ok(Some(Bytes::from(b)));
    }
    Ok(None)
}

/// Builds a new store in `dir` (which must not exist) from the dump read from `input`,
/// keeping every version number; `progress(versions)` is called as it goes.
pub fn load(
    dir: &Path,
    input: impl BufRead,
    progress: &mut dyn FnMut(u64),
) -> Result<DumpSummary, CliError> {
    let mut lines = input.lines();
    let header: Value = match lines.next() {
        Some(l) => serde_json::from_str(&l?).map_err(|e| bad(1, e))?,
        None => return Err(bad(1, "empty input: not a dump")),
    };
    if header.get("format").and_then(Value::as_str) != Some("strata-dump")
        || header.get("version").and_then(Value::as_u64) != Some(1)
    {
        return Err(bad(1, "not a strata dump of version 1"));
    }
    let seqno = header
        .get("seqno")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(1, "the header lacks seqno"))?;
    let mut summary = DumpSummary {
        seqno,
        keys: 0,
        versions: 0,
    };
    let mut ended = false;
    let mut line_no = 1u64;
    let mut last_key: Option<Bytes> = None;
    let mut failure: Option<CliError> = None;
    let versions = std::iter::from_fn(|| {
        if ended || failure.is_some() {
            return None;
        }
        let Some(line) = lines.next() else {
            let e = bad(line_no, "the dump ends without its end line (truncated?)");
            let abort = crate::Error::InvalidConfig(e.message.clone());
            failure = Some(e);
            return Some(Err(abort));
        };
        line_no += 1;
        let parsed = (|| -> Result<Option<IngestVersion>, CliError> {
            let line = line?;
            let v: Value = serde_json::from_str(&line).map_err(|e| bad(line_no, e))?;
            let o = v
                .as_object()
                .ok_or_else(|| bad(line_no, "not a JSON object"))?;
            if o.get("end").and_then(Value::as_bool) == Some(true) {
                let n = o.get("versions").and_then(Value::as_u64);
                if n != Some(summary.versions) {
                    return Err(bad(
                        line_no,
                        format!(
                            "the end line counts {n:?} versions, the dump held {}",
                            summary.versions
                        ),
                    ));
                }
                ended = true;
                return Ok(None);
            }
            let key = field(o, "key", line_no)?.ok_or_else(|| bad(line_no, "no key"))?;
            let version = o
                .get("version")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(line_no, "no version"))?;
            let deleted = o.get("deleted").and_then(Value::as_bool) == Some(true);
            let value = field(o, "value", line_no)?;
            let value = match (value, deleted) {
                (Some(v), false) => Some(v),
                (None, true) => None,
                _ => return Err(bad(line_no, "needs either a value or \"deleted\": true")),
            };
            if last_key.as_ref() != Some(&key) {
                summary.keys += 1;
                last_key = Some(key.clone());
            }
            summary.versions += 1;
            if summary.versions.is_multiple_of(4096) {
                progress(summary.versions);
            }
            Ok(Some(IngestVersion {
                key,
                seqno: SeqNo::new(version),
                value,
            }))
        })();
        match parsed {
            Ok(Some(v)) => Some(Ok(v)),
            Ok(None) => None,
            Err(e) => {
                // Failing the stream keeps the partial store from being published.
                let abort = crate::Error::InvalidConfig(e.message.clone());
                failure = Some(e);
                Some(Err(abort))
            }
        }
    });
    let built =
        crate::ingest::build_store(dir, &crate::Config::default(), SeqNo::new(seqno), versions);
    if let Some(e) = failure {
        // Nothing was published; the next attempt clears the temporary directory.
        return Err(e);
    }
    built.map_err(|e| match e {
        crate::Error::InvalidConfig(m) => CliError::new(exit::FAILED, format!("dump: {m}")),
        other => other.into(),
    })?;
    Ok(summary)
}
