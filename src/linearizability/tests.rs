//! The checker on hand-made histories: ones that are linearizable, and ones that are not
//! (stale reads, lost and doubled writes, versions out of order), so a pass means something.

use std::collections::BTreeMap;

use super::*;

const STEPS: u64 = 1_000_000;

fn parse(text: &str) -> History {
    match History::parse(text) {
        Ok(h) => h,
        Err(e) => panic!("bad test history: {e}"),
    }
}

fn linearizable(text: &str) -> bool {
    let v = check_history(&parse(text), STEPS);
    assert!(
        v.keys
            .values()
            .all(|k| !matches!(k, KeyVerdict::Undecided { .. })),
        "undecided: {v:?}"
    );
    v.is_linearizable()
}

#[test]
fn sequential_operations_follow_the_model() {
    assert!(linearizable(
        "1 0 1 k get - - ok absent\n\
         1 2 3 k put a - ok written 1\n\
         1 4 5 k get - - ok value a 1\n\
         1 6 7 k put b 2 ok written 2\n\
         1 8 9 k put c 2 ok conflict\n\
         1 10 11 k del - - ok deleted\n\
         1 12 13 k del - - ok notfound\n\
         1 14 15 k put d - ok written 1\n"
    ));
}

#[test]
fn a_stale_read_after_a_completed_write_is_caught() {
    // The write of b completed before the read began, yet the read saw a.
    assert!(!linearizable(
        "1 0 1 k put a - ok written 1\n\
         1 2 3 k put b - ok written 2\n\
         2 4 5 k get - - ok value a 1\n"
    ));
    // The same read overlapping the write is fine.
    assert!(linearizable(
        "1 0 1 k put a - ok written 1\n\
         1 2 6 k put b - ok written 2\n\
         2 4 5 k get - - ok value a 1\n"
    ));
}

#[test]
fn reads_may_not_go_back_in_time() {
    // Both reads overlap the write, but the second began after the first ended and saw the
    // older value: no single point for the write explains both.
    assert!(!linearizable(
        "1 0 1 k put a - ok written 1\n\
         1 2 20 k put b - ok written 2\n\
         2 3 4 k get - - ok value b 2\n\
         3 5 6 k get - - ok value a 1\n"
    ));
}

#[test]
fn concurrent_writes_may_take_either_order() {
    assert!(linearizable(
        "1 0 10 k put a - ok written 2\n\
         2 1 9 k put b - ok written 1\n\
         3 11 12 k get - - ok value a 2\n"
    ));
    // ...but not both the same version.
    assert!(!linearizable(
        "1 0 10 k put a - ok written 1\n\
         2 1 9 k put b - ok written 1\n"
    ));
}

#[test]
fn an_unknown_write_may_or_may_not_have_happened() {
    let took_effect = "1 0 1 k put a - ok written 1\n\
                       2 2 - k put b - unknown\n\
                       3 10 11 k get - - ok value b 2\n\
                       3 12 13 k get - - ok value b 2\n";
    assert!(linearizable(took_effect));
    let never = "1 0 1 k put a - ok written 1\n\
                 2 2 - k put b - unknown\n\
                 3 10 11 k get - - ok value a 1\n";
    assert!(linearizable(never));
    // It cannot take effect twice, or come and go.
    let flicker = "1 0 1 k put a - ok written 1\n\
                   2 2 - k put b - unknown\n\
                   3 10 11 k get - - ok value b 2\n\
                   3 12 13 k get - - ok value a 1\n";
    assert!(!linearizable(flicker));
    // It cannot take effect before it was invoked.
    let early = "1 0 1 k put a - ok written 1\n\
                 3 2 3 k get - - ok value b 2\n\
                 2 4 - k put b - unknown\n";
    assert!(!linearizable(early));
}

#[test]
fn a_failed_write_must_not_be_seen() {
    assert!(!linearizable(
        "1 0 1 k put a - ok written 1\n\
         2 2 3 k put b - fail\n\
         3 4 5 k get - - ok value b 2\n"
    ));
}

#[test]
fn a_conditional_put_that_won_a_race_it_should_have_lost_is_caught() {
    // Both clients read version 1 and both conditional puts succeeded: a lost update.
    assert!(!linearizable(
        "1 0 1 k put a - ok written 1\n\
         2 2 3 k get - - ok value a 1\n\
         3 2 3 k get - - ok value a 1\n\
         2 4 8 k put b 2 ok written 2\n\
         3 4 8 k put c 2 ok written 3\n"
    ));
    assert!(linearizable(
        "1 0 1 k put a - ok written 1\n\
         2 4 8 k put b 2 ok written 2\n\
         3 4 8 k put c 2 ok conflict\n\
         3 9 10 k get - - ok value b 2\n"
    ));
}

#[test]
fn keys_are_checked_separately_and_failures_are_named() {
    let v = check_history(
        &parse(
            "1 0 1 a put x - ok written 1\n\
             1 2 3 b put y - ok written 1\n\
             1 4 5 b put z - ok written 2\n\
             2 6 7 b get - - ok value y 1\n\
             2 8 9 a get - - ok value x 1\n",
        ),
        STEPS,
    );
    assert!(!v.is_linearizable());
    let failures = v.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "b");
    let KeyVerdict::NotLinearizable { ops, stuck, .. } = failures[0].1 else {
        panic!("{:?}", failures[0].1);
    };
    assert_eq!(*ops, 3);
    assert_eq!(stuck.input, Input::Get);
}

#[test]
fn concurrent_unknown_writes_stay_within_the_budget() {
    // Each unknown write doubles the orders to rule out, so clients resolve them by
    // retrying with the same request ids; a dozen at once is still quick.
    let mut text = String::from("0 0 1 k put start - ok written 1\n");
    for c in 1..=12u64 {
        text.push_str(&format!("{c} {c}0 - k put v{c} - unknown\n"));
    }
    text.push_str("99 1000 1001 k get - - ok value start 1\n");
    assert!(linearizable(&text));
    text.push_str("99 1002 1003 k get - - ok value v7 2\n");
    assert!(linearizable(&text));
    text.push_str("99 1004 1005 k get - - ok value v9 2\n");
    assert!(!linearizable(&text));
}

#[test]
fn the_step_budget_reports_undecided_not_a_pass() {
    let mut text = String::new();
    for c in 1..=30u64 {
        text.push_str(&format!("{c} 0 100 k put v{c} - ok written {c}\n"));
    }
    text.push_str("99 200 201 k get - - ok value nothing 1\n");
    let v = check_history(&parse(&text), 50);
    assert!(!v.is_linearizable());
    assert!(matches!(v.keys["k"], KeyVerdict::Undecided { .. }));
}

fn replica(keys: &[(&str, &[(u64, &str)])]) -> BTreeMap<String, ReplicaKey> {
    keys.iter()
        .map(|(k, h)| {
            (
                k.to_string(),
                h.iter().map(|(v, s)| (*v, s.to_string())).collect(),
            )
        })
        .collect()
}

#[test]
fn replicas_must_agree_and_versions_increase() {
    let good = replica(&[("k", &[(1, "a"), (2, "b")])]);
    let mut all = BTreeMap::new();
    all.insert("n1".to_string(), good.clone());
    all.insert("n2".to_string(), good.clone());
    assert_eq!(check_replicas(&all), vec![]);

    all.insert("n3".to_string(), replica(&[("k", &[(1, "a")])]));
    let found = check_replicas(&all);
    assert!(matches!(&found[..], [Anomaly::ReplicasDiffer { key, .. }] if key == "k"));

    let mut all = BTreeMap::new();
    all.insert("n1".to_string(), replica(&[("k", &[(2, "a"), (2, "b")])]));
    assert!(matches!(
        &check_replicas(&all)[..],
        [Anomaly::VersionsNotIncreasing { .. }]
    ));
    let mut all = BTreeMap::new();
    all.insert("n1".to_string(), replica(&[("k", &[(1, "a"), (2, "a")])]));
    assert!(matches!(
        &check_replicas(&all)[..],
        [Anomaly::AppliedTwice { value, .. }] if value == "a"
    ));
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    let h = parse(
        "1 0 1 k put a - ok written 1\n\
         1 2 3 k put b - ok written 2\n\
         2 4 - j put x - unknown\n",
    );
    let kept = replica(&[("k", &[(1, "a"), (2, "b")])]);
    assert_eq!(check_versions_and_writes(&h, "n1", &kept), vec![]);
    let lost = replica(&[("k", &[(1, "a")])]);
    let found = check_versions_and_writes(&h, "n1", &lost);
    assert!(
        matches!(&found[..], [Anomaly::LostWrite { key, .. }] if key == "k"),
        "{found:?}"
    );
    let swapped = replica(&[("k", &[(1, "z"), (2, "b")])]);
    let found = check_versions_and_writes(&h, "n1", &swapped);
    assert!(
        matches!(&found[..], [Anomaly::VersionMismatch { version: 1, .. }]),
        "{found:?}"
    );
}

#[test]
fn a_write_that_may_have_been_overwritten_is_not_required() {
    let h = parse(
        "1 0 1 k put a - ok written 1\n\
         2 0 - k put b - unknown\n\
         3 0 5 k del - - ok deleted\n",
    );
    assert_eq!(
        check_versions_and_writes(&h, "n1", &BTreeMap::new()),
        vec![]
    );
}
