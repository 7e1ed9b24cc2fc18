//! The bounded channel between two subtasks: one sender (an upstream subtask), one receiver
//! (a downstream subtask's input gate), at most `capacity` messages in between.
//!
//! Why not tokio's mpsc: an exchange between two operators of parallelism p has p × p channels,
//! and tokio's bounded channel allocates a block of 32 slots and two cache-padded halves up
//! front, about 1.8 KB per channel whatever its capacity (p 2048: 7.4 GB before a record
//! moves). This one is a mutex around a `VecDeque` that allocates its `capacity` slots on the
//! first send, and two waker slots: [`bytes_per_channel`] in all, exactly what
//! `runtime::memory` budgets.
//!
//! The lock is held only to push or pop one message and swap a waker, never across an await
//! or I/O; wakers are woken after it is released.

use crate::runtime::message::Message;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State {
    queue: VecDeque<Message>,
    capacity: usize,
    /// The receiver waiting for a message.
    recv_waker: Option<Waker>,
    /// The sender waiting for room.
    send_waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    /// The state; a panic elsewhere while holding the lock cannot leave it inconsistent
    /// (every change is one push, pop or swap), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half; not `Clone`: one sender per channel.
pub struct Sender {
    shared: Arc<Shared>,
}

/// The receiving half.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// The receiver is gone: the message comes back.
#[derive(Debug)]
pub struct SendError(pub Message);

/// A channel holding at most `capacity` (at least 1) messages.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            recv_waker: None,
            send_waker: None,
            sender_alive: true,
            receiver_alive: true,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Heap bytes one channel of `capacity` takes once it carries messages: the shared state with
/// its reference counts, the slots, and in each slot the smallest batch an exchange sends (one
/// column of a few rows: between operators of high parallelism, a hash exchange cuts every
/// batch into that many parts, so the parts in flight are that small). Larger batches in
/// flight come on top.
pub fn bytes_per_channel(capacity: usize) -> u64 {
    // What the allocator adds per allocation (glibc: 8 bytes of header, 16-byte granules).
    let rounded = |n: usize| (n + 8).div_ceil(16) * 16;
    let capacity = capacity.max(1);
    // Arc's two counters, then the state; the queue's slots are one allocation of their own.
    let shared = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Shared>();
    let slots = capacity * std::mem::size_of::<Message>();
    // A small part: its column vector, and a column's row spans (two rows).
    let part = rounded(std::mem::size_of::<crate::record::Column>()) + rounded(16);
    (rounded(shared) + rounded(slots) + capacity * part) as u64
}

fn replace_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Sender {
    /// Sends `message`, waiting while the channel is full (the backpressure that slows an
    /// upstream subtask). Fails when the receiver is gone.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let mut message = Some(message);
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                let m = message.take().expect("polled after completion");
                return Poll::Ready(Err(SendError(m)));
            }
            if state.queue.len() >= state.capacity {
                replace_waker(&mut state.send_waker, cx);
                return Poll::Pending;
            }
            if state.queue.capacity() == 0 {
                let capacity = state.capacity;
                state.queue.reserve_exact(capacity);
            }
            state
                .queue
                .push_back(message.take().expect("polled after completion"));
            let waker = state.recv_waker.take();
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Receiver {
    /// The next message; `Ready(None)` once the sender is gone and everything it sent has been
    /// received.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(m) => {
                let waker = state.send_waker.take();
                drop(state);
                if let Some(w) = waker {
                    w.wake();
                }
                Poll::Ready(Some(m))
            }
            None if !state.sender_alive => Poll::Ready(None),
            None => {
                replace_waker(&mut state.recv_waker, cx);
                Poll::Pending
            }
        }
    }

    /// [`Receiver::poll_recv`] as a future.
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_alive = false;
        let waker = state.recv_waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        // What was in flight goes now, not when the sender drops too.
        let dropped = std::mem::take(&mut state.queue);
        let waker = state.send_waker.take();
        drop(state);
        drop(dropped);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Batch;

    fn data(n: usize) -> Message {
        Message::Data(Batch::empty_with_len(n))
    }

    fn len(m: Option<Message>) -> usize {
        match m {
            Some(Message::Data(b)) => b.len(),
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_a_full_channel_makes_the_sender_wait() {
        let (tx, mut rx) = channel(2);
        tx.send(data(1)).await.unwrap();
        tx.send(data(2)).await.unwrap();
        let mut third = Box::pin(tx.send(data(3)));
        let waker = futures_task_noop();
        let mut cx = Context::from_waker(&waker);
        assert!(
            third.as_mut().poll(&mut cx).is_pending(),
            "full: the sender waits"
        );
        assert_eq!(len(rx.recv().await), 1);
        assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(len(rx.recv().await), 2);
        assert_eq!(len(rx.recv().await), 3);
        drop(third);
        drop(tx);
        assert!(rx.recv().await.is_none(), "the sender is gone: the end");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = channel(1);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = rx.recv().await {
                got.push(len(Some(m)));
            }
            got
        });
        for n in 1..=50 {
            tx.send(data(n)).await.unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), (1..=50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn sending_to_a_dropped_receiver_fails_and_frees_what_was_queued() {
        let (tx, rx) = channel(4);
        tx.send(data(1)).await.unwrap();
        drop(rx);
        assert!(matches!(tx.send(data(2)).await, Err(SendError(_))));
    }

    #[test]
    fn the_budgeted_size_covers_the_state_and_the_slots() {
        let per = bytes_per_channel(4);
        let min = (std::mem::size_of::<Shared>() + 4 * std::mem::size_of::<Message>()) as u64;
        assert!(per >= min && per <= 4 * min, "{per} vs {min}");
    }

    fn futures_task_noop() -> Waker {
        Waker::noop().clone()
    }

    use std::future::Future;
}
