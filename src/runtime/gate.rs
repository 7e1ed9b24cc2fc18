//! A subtask's input gate: one bounded receiver per upstream subtask, polled fairly, any of
//! them can be blocked (not polled) while a barrier aligns.
//!
//! A blocked channel's messages stay in its bounded channel, so its sender soon waits: that is
//! how alignment holds back a fast input without buffering it here.

use crate::runtime::channel::Receiver;
use crate::runtime::message::Message;
use std::future::poll_fn;
use std::task::Poll;

/// What the gate hands its subtask.
#[derive(Debug)]
pub enum GateEvent {
    /// A message on channel `i` (`Message::End` once per channel).
    Message(usize, Message),
    /// Channel `i` closed without `End`: its sender failed or was cancelled.
    Disconnected(usize),
    /// Every channel has ended.
    Finished,
}

pub struct InputGate {
    receivers: Vec<Receiver>,
    ended: Vec<bool>,
    blocked: Vec<bool>,
    open: usize,
    /// Where the next poll starts: round-robin, so one busy channel cannot starve the others.
    next: usize,
}

impl InputGate {
    pub fn new(receivers: Vec<Receiver>) -> Self {
        let n = receivers.len();
        InputGate {
            receivers,
            ended: vec![false; n],
            blocked: vec![false; n],
            open: n,
            next: 0,
        }
    }

    pub fn channels(&self) -> usize {
        self.receivers.len()
    }

    pub fn block(&mut self, channel: usize) {
        self.blocked[channel] = true;
    }

    pub fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// The next message from any channel that is neither blocked nor ended.
    pub async fn next(&mut self) -> GateEvent {
        if self.open == 0 {
            return GateEvent::Finished;
        }
        let n = self.receivers.len();
        let event = poll_fn(|cx| {
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.ended[i] || self.blocked[i] {
                    continue;
                }
                match self.receivers[i].poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        self.next = (i + 1) % n;
                        return Poll::Ready((i, Some(m)));
                    }
                    Poll::Ready(None) => return Poll::Ready((i, None)),
                    Poll::Pending => {}
                }
            }
            // Every live channel is empty or blocked: the wakers of the empty ones are
            // registered. (All live channels blocked cannot last: the aligner releases them
            // once the last live channel delivers its barrier or ends.)
            Poll::Pending
        })
        .await;
        match event {
            (i, Some(Message::End)) => {
                self.ended[i] = true;
                self.blocked[i] = false;
                self.open -= 1;
                GateEvent::Message(i, Message::End)
            }
            (i, Some(m)) => GateEvent::Message(i, m),
            (i, None) => {
                self.ended[i] = true;
                self.open -= 1;
                GateEvent::Disconnected(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Batch;
    use crate::runtime::channel::channel;

    #[tokio::test]
    async fn blocked_channels_are_not_polled_and_end_is_counted() {
        let (tx0, rx0) = channel(4);
        let (tx1, rx1) = channel(4);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(Message::Data(Batch::empty_with_len(1)))
            .await
            .unwrap();
        tx1.send(Message::Data(Batch::empty_with_len(2)))
            .await
            .unwrap();
        gate.block(0);
        match gate.next().await {
            GateEvent::Message(1, Message::Data(b)) => assert_eq!(b.len(), 2),
            other => panic!("expected data on channel 1, got {other:?}"),
        }
        tx1.send(Message::End).await.unwrap();
        assert!(matches!(
            gate.next().await,
            GateEvent::Message(1, Message::End)
        ));
        gate.unblock_all();
        assert!(matches!(
            gate.next().await,
            GateEvent::Message(0, Message::Data(_))
        ));
        drop(tx0);
        assert!(matches!(gate.next().await, GateEvent::Disconnected(0)));
        assert!(matches!(gate.next().await, GateEvent::Finished));
    }
}
