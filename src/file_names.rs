//! What every file in a store directory is called (`docs/format.md`, "Directory").
//!
//! Numbered files take their number from the one store-wide counter, so a number names one
//! file whatever its kind; names carry at least six digits.

/// The lock file, held while a store is open.
pub const LOCK: &str = "LOCK";
/// The file that names the live manifest.
pub const CURRENT: &str = "CURRENT";
/// The new `CURRENT` while it is written, before it is renamed into place.
pub const CURRENT_TMP: &str = "CURRENT.tmp";
/// The directory, inside the store, where recovery moves files it does not use but cannot
/// prove unreferenced.
pub const LOST: &str = "lost";

/// WAL segment `number`.
pub fn wal(number: u64) -> String {
    format!("{number:06}.wal")
}

/// WAL segment `number` while it is made ready ahead of use.
pub fn wal_spare(number: u64) -> String {
    format!("{number:06}.wal.spare")
}

/// Table `number`.
pub fn table(number: u64) -> String {
    format!("{number:06}.sst")
}

/// Manifest `number`.
pub fn manifest(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// The number of a WAL segment's name.
pub fn parse_wal(name: &str) -> Option<u64> {
    number(name.strip_suffix(".wal")?)
}

/// True for the name of a spare WAL segment.
pub fn is_wal_spare(name: &str) -> bool {
    name.strip_suffix(".wal.spare")
        .is_some_and(|n| number(n).is_some())
}

/// The number of a table's name.
pub fn parse_table(name: &str) -> Option<u64> {
    number(name.strip_suffix(".sst")?)
}

/// The number of a manifest's name.
pub fn parse_manifest(name: &str) -> Option<u64> {
    number(name.strip_prefix("MANIFEST-")?)
}

fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_do_not_mix() {
        assert_eq!(wal(7), "000007.wal");
        assert_eq!(parse_wal("000007.wal"), Some(7));
        assert_eq!(parse_wal("12345678.wal"), Some(12_345_678));
        assert_eq!(parse_wal("x.wal"), None);
        assert_eq!(parse_wal(".wal"), None);
        assert_eq!(parse_wal("000007.sst"), None);
        assert_eq!(parse_wal(&wal_spare(7)), None);
        assert!(is_wal_spare(&wal_spare(7)));
        assert!(!is_wal_spare("x.wal.spare"));
        assert_eq!(parse_table(&table(42)), Some(42));
        assert_eq!(parse_table("000042.wal"), None);
        assert_eq!(parse_manifest(&manifest(42)), Some(42));
        assert_eq!(parse_manifest("MANIFEST-"), None);
        assert_eq!(parse_manifest("MANIFEST-1x"), None);
    }
}
