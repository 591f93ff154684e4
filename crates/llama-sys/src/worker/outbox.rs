//! Delivery of a request's events without ever blocking the worker.
//!
//! The stream to a consumer is a bounded channel. A consumer that stops reading must
//! not stop the worker, which decodes the requests batched with it too: each request's
//! events go through an [`Outbox`] that hands the channel what it takes now and holds
//! the rest, in order, for later. The one event the channel has no room for is kept in
//! the channel's own send (a future polled without blocking, keeping its place in the
//! queue); the others wait behind it. Past [`PENDING_BYTES`] held, the request is
//! *paused*: its sequences are left out of the round's batches until its consumer has
//! read (see `round`), so a consumer that never reads costs a bounded amount of memory.
//! A consumer that leaves (drops its stream) shows as [`Delivery::Gone`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use optillm_core::{BackendError, StreamEvent, StreamSender};

/// One event of a request's stream.
pub(crate) type Event = Result<StreamEvent, BackendError>;

/// Bytes (estimated) an outbox holds before its request pauses.
pub(crate) const PENDING_BYTES: usize = 64 * 1024;

/// A send the channel has not completed yet; `false` once the consumer is gone.
type Sending = Pin<Box<dyn Future<Output = bool>>>;

/// What a [`Outbox::flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Every event is in the channel.
    Sent,
    /// Some events wait for the consumer to read.
    Held,
    /// The consumer has gone; the events held were dropped.
    Gone,
}

/// Wakes the worker thread (parked while it waits for a consumer) when a channel it
/// waits on has room again or has closed.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that unparks the current thread.
pub(crate) fn thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// The events of one request on their way to its consumer.
pub(crate) struct Outbox {
    sender: StreamSender,
    /// The event the channel has no room for yet.
    sending: Option<(Sending, usize)>,
    /// Events behind it, in order.
    queue: VecDeque<(Event, usize)>,
    /// Estimated bytes of `sending` and `queue`.
    bytes: usize,
    limit: usize,
    gone: bool,
    waker: Waker,
}

impl Outbox {
    pub(crate) fn new(sender: StreamSender, waker: Waker) -> Self {
        Self::with_limit(sender, waker, PENDING_BYTES)
    }

    /// An outbox whose request pauses past `limit` bytes held.
    pub(crate) fn with_limit(sender: StreamSender, waker: Waker, limit: usize) -> Self {
        Self {
            sender,
            sending: None,
            queue: VecDeque::new(),
            bytes: 0,
            limit,
            gone: false,
            waker,
        }
    }

    /// Adds an event behind those held and delivers what the channel takes now;
    /// `false` when the consumer has gone.
    pub(crate) fn push(&mut self, event: Event) -> bool {
        if self.gone {
            return false;
        }
        let size = size_of(&event);
        self.bytes += size;
        self.queue.push_back((event, size));
        self.flush() != Delivery::Gone
    }

    /// Hands the channel the events it has room for, in order, without blocking.
    pub(crate) fn flush(&mut self) -> Delivery {
        if self.gone {
            return Delivery::Gone;
        }
        loop {
            if self.sending.is_none() {
                let Some((event, size)) = self.queue.pop_front() else {
                    break;
                };
                let sender = self.sender.clone();
                self.sending = Some((Box::pin(async move { sender.send(event).await }), size));
            }
            let Some((send, size)) = self.sending.as_mut() else {
                break;
            };
            match send.as_mut().poll(&mut Context::from_waker(&self.waker)) {
                Poll::Ready(true) => {
                    self.bytes = self.bytes.saturating_sub(*size);
                    self.sending = None;
                }
                Poll::Ready(false) => return self.leave(),
                Poll::Pending => return Delivery::Held,
            }
        }
        if self.sender.is_closed() {
            return self.leave();
        }
        Delivery::Sent
    }

    /// The consumer has gone: nothing more to deliver.
    fn leave(&mut self) -> Delivery {
        self.gone = true;
        self.sending = None;
        self.queue.clear();
        self.bytes = 0;
        Delivery::Gone
    }

    /// Whether the consumer has gone (dropped its stream).
    pub(crate) fn is_gone(&self) -> bool {
        self.gone || self.sender.is_closed()
    }

    /// Whether it holds more than its limit: its request waits for its consumer.
    pub(crate) fn is_full(&self) -> bool {
        !self.gone && self.bytes > self.limit
    }

    /// Estimated bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.bytes
    }
}

/// About what an event costs held in memory.
fn size_of(event: &Event) -> usize {
    const OVERHEAD: usize = 64;
    match event {
        Ok(StreamEvent::Delta { text, logprob, .. }) => {
            let logprob = logprob.as_ref().map_or(0, |l| {
                OVERHEAD
                    + l.token.len()
                    + l.top
                        .iter()
                        .map(|t| OVERHEAD + t.token.len())
                        .sum::<usize>()
            });
            OVERHEAD + text.len() + logprob
        }
        Ok(StreamEvent::Done(c)) => {
            OVERHEAD
                + c.choices
                    .iter()
                    .map(|c| OVERHEAD + c.text.len() + c.logprobs.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
        }
        Err(_) => OVERHEAD,
    }
}

#[cfg(test)]
mod tests {
    use optillm_core::backend::STREAM_BUFFER;
    use optillm_core::stream_channel;

    use super::*;

    fn delta(text: &str) -> Event {
        Ok(StreamEvent::Delta {
            index: 0,
            text: text.to_string(),
            logprob: None,
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_consumer_that_does_not_read_never_blocks_the_sender() {
        let (sender, mut stream) = stream_channel();
        let mut outbox = Outbox::new(sender, Waker::noop().clone());
        // Three times what the channel holds, each push returning at once.
        let total = 3 * STREAM_BUFFER;
        for i in 0..total {
            assert!(outbox.push(delta(&i.to_string())));
        }
        assert_eq!(outbox.flush(), Delivery::Held);
        assert!(outbox.held() > 0);
        assert!(!outbox.is_full());
        // The consumer reads: everything arrives, in order, once flushed.
        let rt = runtime();
        let mut got = Vec::new();
        while got.len() < total {
            match rt.block_on(stream.next_event()) {
                Some(Ok(StreamEvent::Delta { text, .. })) => got.push(text),
                other => panic!("unexpected {other:?}"),
            }
            outbox.flush();
        }
        let want: Vec<String> = (0..total).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(outbox.flush(), Delivery::Sent);
        assert_eq!(outbox.held(), 0);
    }

    #[test]
    fn it_is_full_past_its_limit_and_not_once_read() {
        let (sender, mut stream) = stream_channel();
        let mut outbox = Outbox::with_limit(sender, Waker::noop().clone(), 1000);
        let piece = "x".repeat(100);
        let mut pushed = 0;
        while !outbox.is_full() {
            assert!(outbox.push(delta(&piece)));
            pushed += 1;
            assert!(pushed < 10_000, "never full");
        }
        // Full only once the channel's own room is used up and over 1000 bytes wait.
        assert!(pushed > STREAM_BUFFER);
        assert!(outbox.held() > 1000);
        let rt = runtime();
        for _ in 0..STREAM_BUFFER {
            assert!(rt.block_on(stream.next_event()).is_some());
        }
        outbox.flush();
        assert!(!outbox.is_full());
    }

    #[test]
    fn a_consumer_that_left_is_gone_and_its_events_dropped() {
        let (sender, stream) = stream_channel();
        let mut outbox = Outbox::new(sender, Waker::noop().clone());
        for _ in 0..2 * STREAM_BUFFER {
            assert!(outbox.push(delta("abc")));
        }
        assert!(!outbox.is_gone());
        drop(stream);
        assert!(outbox.is_gone());
        assert_eq!(outbox.flush(), Delivery::Gone);
        assert!(!outbox.push(delta("more")));
        assert_eq!(outbox.held(), 0);
        assert!(!outbox.is_full());
        // Also with nothing held: the channel's closing is noticed on a flush.
        let (sender, stream) = stream_channel();
        let mut outbox = Outbox::new(sender, Waker::noop().clone());
        assert_eq!(outbox.flush(), Delivery::Sent);
        drop(stream);
        assert_eq!(outbox.flush(), Delivery::Gone);
    }

    #[test]
    fn the_waker_is_called_when_the_consumer_makes_room() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let (sender, mut stream) = stream_channel();
        let mut outbox = Outbox::new(sender, Waker::from(flag.clone()));
        for _ in 0..STREAM_BUFFER + 1 {
            outbox.push(delta("a"));
        }
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        let rt = runtime();
        assert!(rt.block_on(stream.next_event()).is_some());
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(outbox.flush(), Delivery::Sent);
    }
}
