//! Node identity: the numeric Raft id derived from a node's name, and the `NODE` file that
//! pins a data directory to that node.
//!
//! The id is FNV-1a (64-bit) of the UTF-8 name with the top bit cleared, and 1 if that leaves
//! 0. Every node derives every peer's id from the peer list alone, so a cluster forms without
//! exchanging ids. The derivation is part of the format: changing it would re-number every
//! existing cluster.
//!
//! `NODE` layout (integers little-endian):
//!
//! ```text
//! magic: [u8; 8] = "strataND" | format: u32 (= 1) | id: u64 | name_len: u16 | name (UTF-8)
//! | crc32: u32 (masked, over every byte before it)
//! ```
//!
//! The file is written once, when a pristine directory is first opened (write to
//! `NODE.tmp`, fsync, rename, fsync the directory). Opening a directory under another name
//! fails instead of letting one node's data serve as another's. A node whose data was wiped
//! must rejoin under a new name (so a new id): Raft forbids a voter from forgetting its log.

use std::path::Path;

use super::error::ReplicationError;
use super::types::NodeId;
use crate::checksum::mask_crc;
use crate::coding::{get_u32, get_u64};

const MAGIC: [u8; 8] = *b"strataND";
const FORMAT: u32 = 1;
/// Name of the identity file inside a replica's directory.
pub const FILE: &str = "NODE";
/// Longest node name accepted.
pub const MAX_NAME_LEN: usize = 255;

/// The Raft id of the node called `name`.
pub fn node_id(name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match h & (u64::MAX >> 1) {
        0 => 1,
        id => id,
    }
}

/// A node's name and id, as its `NODE` file records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The numeric Raft id.
    pub id: NodeId,
    /// The node's name.
    pub name: String,
}

impl Identity {
    /// Reads `dir/NODE` and checks it names `name`, or creates it in a directory that has
    /// none.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Identity, ReplicationError> {
        check_name(name)?;
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let found = decode(&bytes).map_err(|reason| crate::Error::Corruption {
                    file: path.clone(),
                    offset: 0,
                    reason,
                })?;
                if found.name != name {
                    return Err(ReplicationError::Identity(format!(
                        "{} belongs to node {:?} (id {}), not {:?}",
                        dir.display(),
                        found.name,
                        found.id,
                        name
                    )));
                }
                if found.id != node_id(name) {
                    return Err(ReplicationError::Identity(format!(
                        "{} records id {} for {:?}, which derives {}",
                        path.display(),
                        found.id,
                        name,
                        node_id(name)
                    )));
                }
                Ok(found)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity {
                    id: node_id(name),
                    name: name.to_string(),
                };
                super::files::write_atomic(dir, FILE, &encode(&id))?;
                Ok(id)
            }
            Err(e) => Err(crate::Error::Io {
                path: Some(path),
                source: e,
            }
            .into()),
        }
    }
}

fn check_name(name: &str) -> Result<(), ReplicationError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ReplicationError::Identity(format!(
            "a node name needs 1 to {MAX_NAME_LEN} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

fn encode(id: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + 8 + 2 + id.name.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&id.id.to_le_bytes());
    // check_name bounds names to MAX_NAME_LEN bytes
    out.extend_from_slice(&(id.name.len() as u16).to_le_bytes());
    out.extend_from_slice(id.name.as_bytes());
    let crc = mask_crc(crc32fast::hash(&out));
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<Identity, String> {
    let body_len = bytes.len().checked_sub(4).ok_or("node file truncated")?;
    let (body, crc) = bytes.split_at(body_len);
    if get_u32(crc, 0) != Some(mask_crc(crc32fast::hash(body))) {
        return Err("node file checksum mismatch".into());
    }
    if body.get(..8) != Some(&MAGIC[..]) {
        return Err("bad magic number in node file".into());
    }
    let format = get_u32(body, 8).ok_or("node file truncated")?;
    if format != FORMAT {
        return Err(format!("unsupported node file format {format}"));
    }
    let id = get_u64(body, 12).ok_or("node file truncated")?;
    let len = body
        .get(20..22)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or("node file truncated")?;
    let name = body
        .get(22..)
        .filter(|n| n.len() == len)
        .ok_or("node name length mismatch")?;
    let name = std::str::from_utf8(name).map_err(|_| "node name is not UTF-8")?;
    Ok(Identity {
        id,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_never_zero() {
        // Pinned: these numbers are part of the on-disk and wire format.
        assert_eq!(node_id("node-1"), node_id("node-1"));
        let ids: std::collections::HashSet<_> =
            (1..=100).map(|i| node_id(&format!("node-{i}"))).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.iter().all(|&id| id != 0 && id < 1 << 63));
        assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325 & (u64::MAX >> 1));
    }

    #[test]
    fn the_node_file_pins_the_directory_to_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), "node-1").unwrap();
        assert_eq!(a.id, node_id("node-1"));
        assert_eq!(Identity::load_or_create(dir.path(), "node-1").unwrap(), a);
        let err = Identity::load_or_create(dir.path(), "node-2").unwrap_err();
        assert!(matches!(err, ReplicationError::Identity(_)), "{err}");
        assert!(Identity::load_or_create(dir.path(), "").is_err());
    }

    #[test]
    fn a_damaged_node_file_is_corruption_not_a_panic() {
        let good = encode(&Identity {
            id: node_id("n"),
            name: "n".into(),
        });
        assert!(decode(&good).is_ok());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), &good[..good.len() - 1]).unwrap();
        let err = Identity::load_or_create(dir.path(), "n").unwrap_err();
        assert!(
            matches!(
                err,
                ReplicationError::Store(crate::Error::Corruption { .. })
            ),
            "{err}"
        );
    }
}
