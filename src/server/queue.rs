//! A bounded blocking work queue for the server's store threads: a mutex-guarded deque and a
//! condition variable. A push past the bound is refused at once, so a flood of requests gets
//! fast "busy" answers instead of an ever longer wait.
//!
//! Idle consumers sleep on the condition variable and are woken only when they are needed;
//! they never spin or yield while waiting. (Spinning channel receivers burned a fifth of the
//! server's CPU in `sched_yield` on a two-core machine.)

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

/// Why a push was refused; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused<T> {
    /// The queue holds its bound.
    Full(T),
    /// The queue is closed.
    Closed(T),
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    sleeping: usize,
}

/// A multi-producer, multi-consumer blocking queue.
#[derive(Debug)]
pub(crate) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    capacity: usize,
}

impl<T> WorkQueue<T> {
    /// A queue holding at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> WorkQueue<T> {
        WorkQueue {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                sleeping: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Adds `item`; gives it back if the queue is full or closed.
    pub(crate) fn push(&self, item: T) -> Result<(), Refused<T>> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Refused::Closed(item));
        }
        if s.items.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        s.items.push_back(item);
        let wake = s.sleeping > 0;
        drop(s);
        if wake {
            self.cv.notify_one();
        }
        Ok(())
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.sleeping += 1;
            self.cv.wait(&mut s);
            s.sleeping -= 1;
        }
    }

    /// The next item if one is queued now.
    pub(crate) fn try_pop(&self) -> Option<T> {
        self.state.lock().items.pop_front()
    }

    /// Refuses new items and wakes every waiting consumer; queued items are still handed out.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_flow_in_order_and_close_ends_consumers() {
        let q = Arc::new(WorkQueue::new(2000));
        let consumer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(i) = q.pop() {
                    got.push(i);
                }
                got
            })
        };
        for i in 0..1000 {
            q.push(i).unwrap();
        }
        q.close();
        assert_eq!(q.push(1000), Err(Refused::Closed(1000)));
        assert_eq!(consumer.join().unwrap(), (0..1000).collect::<Vec<_>>());
        assert_eq!(q.try_pop(), None);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let q = WorkQueue::new(2);
        assert!(q.push(1).is_ok());
        assert!(q.push(2).is_ok());
        assert_eq!(q.push(3), Err(Refused::Full(3)));
        assert_eq!(q.try_pop(), Some(1));
        assert!(q.push(3).is_ok());
    }
}
