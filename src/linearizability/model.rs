//! The sequential specification of one key: a register holding a value and a version, with
//! seed B's conditional put.
//!
//! - put: version 1 on an absent key (or the put's `min_version` if that is above 1),
//!   else the current version plus one.
//! - put with `min_version` on a present key whose version is not below it: refused
//!   (conflict), nothing changes.
//! - delete: the key becomes absent (its versions start again); on an absent key it
//!   answers "not found".
//! - get: the value and version, or absent.
//!
//! Values are interned to numbers by the search, so a state is two integers.

/// A key's state: absent, or `(value id, version)`.
pub type State = Option<(u32, u64)>;

/// An operation's input with its value interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A read.
    Get,
    /// A put of value id `value`, conditional when `min_version` is given.
    Put {
        /// The interned value.
        value: u32,
        /// The conditional put's version.
        min_version: Option<u64>,
    },
    /// A delete.
    Delete,
}

/// A definite answer with its value interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Read `(value id, version)`.
    Value(u32, u64),
    /// Read nothing.
    Absent,
    /// Wrote this version.
    Written(u64),
    /// A conditional put was refused.
    Conflict,
    /// Deleted the key.
    Deleted,
    /// Found no key to delete.
    NotFound,
}

/// Applies `step` to `state`. Returns the next state if the model's answer matches
/// `answer` (any answer matches `None`, an unknown outcome), else `None`.
pub fn apply(state: State, step: Step, answer: Option<Answer>) -> Option<State> {
    let (next, produced) = match step {
        Step::Get => (
            state,
            match state {
                Some((v, n)) => Answer::Value(v, n),
                None => Answer::Absent,
            },
        ),
        Step::Put { value, min_version } => match state {
            None => {
                let version = min_version.unwrap_or(1).max(1);
                (Some((value, version)), Answer::Written(version))
            }
            Some((_, current)) => match min_version {
                Some(m) if m <= current => (state, Answer::Conflict),
                _ => (
                    Some((value, current.saturating_add(1))),
                    Answer::Written(current.saturating_add(1)),
                ),
            },
        },
        Step::Delete => match state {
            Some(_) => (None, Answer::Deleted),
            None => (None, Answer::NotFound),
        },
    };
    match answer {
        Some(a) if a != produced => None,
        _ => Some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_count_up() {
        let s = apply(
            None,
            Step::Put {
                value: 1,
                min_version: None,
            },
            Some(Answer::Written(1)),
        );
        assert_eq!(s, Some(Some((1, 1))));
        let s = apply(
            Some((1, 1)),
            Step::Put {
                value: 2,
                min_version: None,
            },
            None,
        );
        assert_eq!(s, Some(Some((2, 2))));
        assert_eq!(
            apply(
                Some((1, 1)),
                Step::Put {
                    value: 2,
                    min_version: None
                },
                Some(Answer::Written(1))
            ),
            None
        );
    }

    #[test]
    fn a_conditional_put_needs_a_newer_version() {
        let put = |m| Step::Put {
            value: 9,
            min_version: Some(m),
        };
        assert_eq!(
            apply(Some((1, 3)), put(3), Some(Answer::Conflict)),
            Some(Some((1, 3)))
        );
        assert_eq!(
            apply(Some((1, 3)), put(4), Some(Answer::Written(4))),
            Some(Some((9, 4)))
        );
        assert_eq!(
            apply(None, put(5), Some(Answer::Written(5))),
            Some(Some((9, 5)))
        );
        assert_eq!(apply(Some((1, 3)), put(4), Some(Answer::Conflict)), None);
    }

    #[test]
    fn delete_restarts_the_versions() {
        assert_eq!(
            apply(Some((1, 7)), Step::Delete, Some(Answer::Deleted)),
            Some(None)
        );
        assert_eq!(
            apply(None, Step::Delete, Some(Answer::NotFound)),
            Some(None)
        );
        assert_eq!(apply(None, Step::Delete, Some(Answer::Deleted)), None);
        assert_eq!(apply(None, Step::Get, Some(Answer::Absent)), Some(None));
        assert_eq!(
            apply(Some((2, 1)), Step::Get, Some(Answer::Value(2, 1))),
            Some(Some((2, 1)))
        );
        assert_eq!(
            apply(Some((2, 1)), Step::Get, Some(Answer::Value(2, 2))),
            None
        );
    }
}
