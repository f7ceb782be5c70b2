//! The Wing–Gong linearizability search with Lowe's memoisation, per key.
//!
//! The key's operations become call and return events sorted by time (an unknown outcome
//! returns at the end of time) in a doubly linked list. The search walks the list: at a
//! call it tries to linearize that operation now (the model must accept its answer, and the
//! pair (set of linearized operations, state) must be new, else the branch was already
//! explored); at a return whose operation is not linearized yet it backtracks. When the
//! list is empty every operation has a place: the history is linearizable. A step budget
//! bounds the search (the problem is NP-complete); a key that exhausts it is reported as
//! undecided, not as passing.
//!
//! Cost: an unknown write has no completion, so every subset of the unknown writes pending
//! at a point is a distinct branch; a dozen concurrent ones on one key are cheap, forty are
//! not. Clients keep them few by retrying a timed-out write with the same request ids
//! until it gets a definite answer.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::history::{History, Input, Op, Outcome, Output};
use super::model::{Answer, State, Step, apply};

/// The checker's verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Some order of the operations explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable {
        /// Operations considered (fails and unknown reads left out).
        ops: usize,
        /// Most operations placed by any branch of the search.
        linearized: usize,
        /// An operation no branch could place before its completion, at that point.
        stuck: Box<Op>,
    },
    /// The step budget ran out first.
    Undecided {
        /// Steps taken.
        steps: u64,
    },
}

/// The verdict on a whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Each key's verdict.
    pub keys: BTreeMap<String, KeyVerdict>,
}

impl Verdict {
    /// Whether every key is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.keys
            .values()
            .all(|v| matches!(v, KeyVerdict::Linearizable))
    }

    /// The keys that are not linearizable, or whose search ran out of steps.
    pub fn failures(&self) -> Vec<(&str, &KeyVerdict)> {
        self.keys
            .iter()
            .filter(|(_, v)| !matches!(v, KeyVerdict::Linearizable))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
}

/// Checks every key of `history`, each with at most `max_steps` search steps.
pub fn check_history(history: &History, max_steps: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    Verdict {
        keys: by_key
            .into_iter()
            .map(|(k, ops)| (k.to_string(), check_key(&ops, max_steps)))
            .collect(),
    }
}

struct Interner<'a>(HashMap<&'a str, u32>);

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> u32 {
        let next = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        *self.0.entry(s).or_insert(next)
    }
}

/// Checks the operations of one key (all must name the same key).
pub fn check_key(ops: &[&Op], max_steps: u64) -> KeyVerdict {
    let mut names = Interner(HashMap::new());
    let mut kept: Vec<(&Op, Step, Option<Answer>)> = Vec::new();
    for op in ops {
        let step = match &op.input {
            Input::Get => Step::Get,
            Input::Put { value, min_version } => Step::Put {
                value: names.id(value),
                min_version: *min_version,
            },
            Input::Delete => Step::Delete,
        };
        let answer = match &op.outcome {
            Outcome::Fail => continue,
            Outcome::Unknown if step == Step::Get => continue,
            Outcome::Unknown => None,
            Outcome::Ok(o) => Some(match o {
                Output::Value { value, version } => Answer::Value(names.id(value), *version),
                Output::Absent => Answer::Absent,
                Output::Written { version } => Answer::Written(*version),
                Output::Conflict => Answer::Conflict,
                Output::Deleted => Answer::Deleted,
                Output::NotFound => Answer::NotFound,
            }),
        };
        kept.push((op, step, answer));
    }
    search(&kept, max_steps)
}

const HEAD: usize = 0;

/// The event list: node 0 is the head; node `1 + 2i` is op i's call, `2 + 2i` its return.
struct List {
    prev: Vec<usize>,
    next: Vec<usize>,
}

impl List {
    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != usize::MAX {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != usize::MAX {
            self.prev[x] = n;
        }
    }
}

fn search(ops: &[(&Op, Step, Option<Answer>)], max_steps: u64) -> KeyVerdict {
    let n = ops.len();
    if n == 0 {
        return KeyVerdict::Linearizable;
    }
    // Calls sort before returns at the same instant: such operations overlap.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, (op, _, answer)) in ops.iter().enumerate() {
        events.push((op.invoke, 0, 1 + 2 * i));
        let ret = match answer {
            Some(_) => op.complete.unwrap_or(u64::MAX),
            None => u64::MAX,
        };
        events.push((ret.max(op.invoke), 1, 2 + 2 * i));
    }
    events.sort_unstable();
    let mut list = List {
        prev: vec![usize::MAX; 2 * n + 1],
        next: vec![usize::MAX; 2 * n + 1],
    };
    let mut last = HEAD;
    for &(_, _, node) in &events {
        list.next[last] = node;
        list.prev[node] = last;
        last = node;
    }
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut cur = list.next[HEAD];
    let mut steps = 0u64;
    let mut deepest = (0usize, 0usize);
    while list.next[HEAD] != usize::MAX {
        steps += 1;
        if steps > max_steps {
            return KeyVerdict::Undecided { steps };
        }
        let op = (cur - 1) / 2;
        if cur % 2 == 1 {
            let (_, step, answer) = ops[op];
            let placed = apply(state, step, answer).and_then(|next| {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), next)) {
                    Some(next)
                } else {
                    linearized[op / 64] &= !(1 << (op % 64));
                    None
                }
            });
            match placed {
                Some(next) => {
                    stack.push((cur, state));
                    state = next;
                    list.unlink(cur);
                    list.unlink(cur + 1);
                    cur = list.next[HEAD];
                }
                None => cur = list.next[cur],
            }
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), op);
            }
            let Some((call, before)) = stack.pop() else {
                return KeyVerdict::NotLinearizable {
                    ops: n,
                    linearized: deepest.0,
                    stuck: Box::new(ops[deepest.1].0.clone()),
                };
            };
            let back = (call - 1) / 2;
            linearized[back / 64] &= !(1 << (back % 64));
            state = before;
            list.relink(call + 1);
            list.relink(call);
            cur = list.next[call];
        }
    }
    KeyVerdict::Linearizable
}
