//! What one channel between two subtasks costs, measured by counting the heap: a full channel
//! of small batches holds no more than `bytes_per_channel`, the figure the memory budget
//! multiplies by p × q (tokio's bounded channel took about 1.8 KB before a message).

use floe::record::{Batch, Column};
use floe::runtime::channel::{bytes_per_channel, channel};
use floe::runtime::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[tokio::test(flavor = "current_thread")]
async fn a_channel_costs_no_more_than_the_budgeted_bytes() {
    const N: usize = 10_000;
    let mut ends = Vec::with_capacity(N);
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 0..N {
        let (tx, rx) = channel(4);
        // Full, of small parts, as a hash exchange between high parallelisms sends them.
        for _ in 0..4 {
            tx.send(Message::Data(Batch::new(vec![Column::Int(vec![1, 2])])))
                .await
                .unwrap();
        }
        ends.push((tx, rx));
    }
    let per_channel = (LIVE.load(Ordering::SeqCst) - before) as usize / N
        - std::mem::size_of::<(
            floe::runtime::channel::Sender,
            floe::runtime::channel::Receiver,
        )>();
    let budget = bytes_per_channel(4) as usize;
    assert!(
        per_channel <= budget,
        "a channel with a message holds {per_channel} bytes, above the {budget} budgeted"
    );
    assert!(
        per_channel * 2 > budget,
        "{per_channel} vs {budget}: the budget is close"
    );
    drop(ends);
}
