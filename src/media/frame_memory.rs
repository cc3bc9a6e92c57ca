//! Memory for decoded frames that outlives one file: a GStreamer allocator whose large blocks
//! go back to a process-wide cache when their buffers are freed, and come out of it, zeroed,
//! for the next file's decoder.
//!
//! Why: a decoder's buffer pool grows to the frames in flight (about 120 at 720p with the
//! zoom pass's look-back) and is freed when its pipeline stops. Each new 720p buffer is 340
//! fresh pages, each a page fault (~1.7 µs here) when the decoder first writes it: ~60 k
//! faults, about 0.1 s of kernel time, for every file of a batch. With the cache only the
//! first file of a process (and a file that holds more frames than any before it) pays.
//!
//! A block handed out again is zeroed first — as fresh pages are — so that no pixel of one
//! file can reach another's buffers, whatever a decoder leaves unwritten. Small requests
//! (under [`MIN_CACHED`]) go to GStreamer's system allocator unchanged.
//!
//! Owns: the allocator and its cache (bounded by [`set_capacity`]; blocks of the size in
//! use are kept before others; [`release_idle`] empties it). Must not touch: pipelines —
//! `decode` offers the allocator in its sink's allocation query, and any buffer pool may use
//! it.

use std::alloc::Layout;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

/// Requests smaller than this are not cached (audio, encoded data, small frames).
pub const MIN_CACHED: usize = 256 * 1024;
/// Every block starts on a page: more than any allocation alignment GStreamer asks for.
const BLOCK_ALIGN: usize = 4096;

/// One block of frame memory, owned by the cache or by one GstMemory.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a Block is plain heap memory with a single owner at any time.
unsafe impl Send for Block {}

impl Block {
    /// A fresh zeroed block. (A page-aligned zeroed allocation writes its zeros, so its pages
    /// are faulted in here rather than by the decoder: the same count, once per block.)
    fn new_zeroed(size: usize) -> Option<Block> {
        let layout = Layout::from_size_align(size, BLOCK_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size (callers ask for at least MIN_CACHED).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Block { ptr, layout })
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    fn zero(&mut self) {
        // SAFETY: the block owns `len` writable bytes.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len()) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_zeroed` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Idle blocks, most recently returned last.
struct Cache {
    idle: VecDeque<Block>,
    bytes: usize,
    capacity: usize,
}

impl Cache {
    /// A block of exactly `len` bytes, if one is idle.
    fn take(&mut self, len: usize) -> Option<Block> {
        let i = self.idle.iter().rposition(|b| b.len() == len)?;
        let b = self.idle.remove(i)?;
        self.bytes -= b.len();
        Some(b)
    }

    /// Keeps `b` for later unless the cache would exceed its capacity even after dropping
    /// the oldest blocks of other sizes (the sizes of a past file).
    fn put(&mut self, b: Block) {
        let len = b.len();
        while self.bytes + len > self.capacity {
            match self.idle.iter().position(|o| o.len() != len) {
                Some(i) => {
                    if let Some(old) = self.idle.remove(i) {
                        self.bytes -= old.len();
                    }
                }
                None => return, // full of this size: `b` is freed
            }
        }
        self.bytes += len;
        self.idle.push_back(b);
    }

    fn trim_to(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.bytes > capacity {
            match self.idle.pop_front() {
                Some(b) => self.bytes -= b.len(),
                None => break,
            }
        }
    }
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    idle: VecDeque::new(),
    bytes: 0,
    capacity: 512 * 1024 * 1024,
});

/// Blocks handed out from the cache, and fresh ones (for tests and the bench).
static REUSED: AtomicU64 = AtomicU64::new(0);
static FRESH: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// How many idle bytes the cache may keep (frames of finished files). Lowering it frees the
/// excess now; 0 turns caching off.
pub fn set_capacity(bytes: usize) {
    if let Ok(mut c) = CACHE.lock() {
        c.trim_to(bytes);
    }
}

/// Blocks handed out again from the cache and blocks allocated fresh, since the process
/// started.
pub fn counts() -> (u64, u64) {
    (
        REUSED.load(Ordering::Relaxed),
        FRESH.load(Ordering::Relaxed),
    )
}

/// Idle bytes the cache holds now.
pub fn idle_bytes() -> usize {
    CACHE.lock().map(|c| c.bytes).unwrap_or(0)
}

/// Frees every idle block now (an idle daemon gives its memory back); returns the bytes
/// freed. The capacity stays: the next files fill the cache again.
pub fn release_idle() -> usize {
    let freed = match CACHE.lock() {
        Ok(mut c) => {
            c.idle.clear();
            std::mem::take(&mut c.bytes)
        }
        Err(_) => 0,
    };
    RELEASED.fetch_add(freed as u64, Ordering::Relaxed);
    freed
}

/// Bytes [`release_idle`] has freed since the process started.
pub fn released_bytes() -> u64 {
    RELEASED.load(Ordering::Relaxed)
}

/// A zeroed block of `len` bytes: a cached one when there is one, else a fresh one.
fn block(len: usize) -> Option<Block> {
    let cached = CACHE.lock().ok().and_then(|mut c| c.take(len));
    match cached {
        Some(mut b) => {
            b.zero();
            REUSED.fetch_add(1, Ordering::Relaxed);
            Some(b)
        }
        None => {
            FRESH.fetch_add(1, Ordering::Relaxed);
            Block::new_zeroed(len)
        }
    }
}

/// GstMemory's destroy notify: the block goes back to the cache.
unsafe extern "C" fn give_back(data: glib::ffi::gpointer) {
    // SAFETY: `data` is the Box<Block> the allocator's `alloc` leaked for this memory;
    // GStreamer calls the notify once, when the memory is freed.
    let b = unsafe { Box::from_raw(data as *mut Block) };
    match CACHE.lock() {
        Ok(mut c) => c.put(*b),
        Err(_) => drop(b),
    }
}

/// Where the usable region starts in a block, and the block's length, for a request of
/// `size` bytes with `params` (alignment mask, prefix, padding); `None` when it cannot be
/// served from page-aligned blocks.
fn block_layout(
    size: usize,
    align_mask: usize,
    prefix: usize,
    padding: usize,
) -> Option<(usize, usize)> {
    let align = align_mask.checked_add(1)?;
    if !align.is_power_of_two() || align > BLOCK_ALIGN {
        return None;
    }
    let offset = prefix.checked_next_multiple_of(align)?;
    let len = offset.checked_add(size)?.checked_add(padding)?;
    Some((offset, len.checked_next_multiple_of(BLOCK_ALIGN)?))
}

mod imp {
    use super::*;
    use gstreamer::subclass::prelude::*;

    #[derive(Default)]
    pub struct FrameAllocator {
        pub(super) system: OnceLock<Option<gst::Allocator>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FrameAllocator {
        const NAME: &'static str = "ObscuraFrameAllocator";
        type Type = super::FrameAllocator;
        type ParentType = gst::Allocator;
    }

    impl ObjectImpl for FrameAllocator {}
    impl GstObjectImpl for FrameAllocator {}

    unsafe impl AllocatorImpl for FrameAllocator {
        unsafe fn alloc(
            &self,
            size: usize,
            params: &gst::AllocationParams,
        ) -> *mut gst::ffi::GstMemory {
            let layout = (size >= MIN_CACHED)
                .then(|| block_layout(size, params.align(), params.prefix(), params.padding()))
                .flatten();
            let Some((offset, len)) = layout else {
                return self.system_alloc(size, params);
            };
            let Some(b) = block(len) else {
                return std::ptr::null_mut();
            };
            let data = b.ptr.as_ptr();
            let owner = Box::into_raw(Box::new(b));
            // SAFETY: `data` holds `len` bytes owned by `owner` until `give_back` runs, and
            // offset + size + padding <= len. The memory is a wrapped system memory: GStreamer
            // maps, shares and copies it as its own, and calls `give_back` once on free.
            unsafe {
                gst::ffi::gst_memory_new_wrapped(
                    params.flags().bits(),
                    data as glib::ffi::gpointer,
                    offset + size + params.padding(),
                    offset,
                    size,
                    owner as glib::ffi::gpointer,
                    Some(give_back),
                )
            }
        }
    }

    impl FrameAllocator {
        /// A small request: GStreamer's own system-memory allocator.
        fn system_alloc(
            &self,
            size: usize,
            params: &gst::AllocationParams,
        ) -> *mut gst::ffi::GstMemory {
            let system = self
                .system
                .get_or_init(|| gst::Allocator::find(Some("SystemMemory")));
            match system {
                Some(a) => a
                    .alloc(size, Some(params))
                    // Ownership of the memory passes to the caller.
                    .map(glib::translate::IntoGlibPtr::into_glib_ptr)
                    .unwrap_or(std::ptr::null_mut()),
                None => std::ptr::null_mut(),
            }
        }
    }
}

glib::wrapper! {
    /// The frame allocator: see the module docs.
    pub struct FrameAllocator(ObjectSubclass<imp::FrameAllocator>)
        @extends gst::Allocator, gst::Object;
}

/// The process's frame allocator (one instance: the cache is process-wide anyway).
pub fn allocator() -> gst::Allocator {
    static ONE: OnceLock<FrameAllocator> = OnceLock::new();
    ONE.get_or_init(glib::Object::new::<FrameAllocator>)
        .clone()
        .upcast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(capacity: usize) -> Cache {
        Cache {
            idle: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    fn blk(len: usize) -> Block {
        Block::new_zeroed(len).expect("allocation")
    }

    #[test]
    fn a_returned_block_is_handed_out_again_for_the_same_size_only() {
        let mut c = cache(10 * BLOCK_ALIGN);
        let b = blk(2 * BLOCK_ALIGN);
        let p = b.ptr;
        c.put(b);
        assert!(c.take(3 * BLOCK_ALIGN).is_none());
        let again = c.take(2 * BLOCK_ALIGN).expect("cached");
        assert_eq!(again.ptr, p);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn a_full_cache_drops_other_sizes_first_then_the_newcomer() {
        let mut c = cache(4 * BLOCK_ALIGN);
        c.put(blk(BLOCK_ALIGN)); // a past file's size
        c.put(blk(2 * BLOCK_ALIGN));
        c.put(blk(2 * BLOCK_ALIGN)); // evicts the one-page block
        assert_eq!(c.bytes, 4 * BLOCK_ALIGN);
        assert!(c.idle.iter().all(|b| b.len() == 2 * BLOCK_ALIGN));
        c.put(blk(2 * BLOCK_ALIGN)); // no room, nothing else to drop: freed
        assert_eq!((c.idle.len(), c.bytes), (2, 4 * BLOCK_ALIGN));
        c.trim_to(BLOCK_ALIGN);
        assert_eq!((c.idle.len(), c.bytes), (0, 0));
        c.put(blk(2 * BLOCK_ALIGN)); // capacity below one block: nothing is kept
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn the_allocator_reuses_a_freed_frame_block_zeroed_and_leaves_small_ones_to_gstreamer() {
        crate::media::init().expect("gstreamer");
        let a = allocator();
        // An odd size no other test or pipeline of this process asks for.
        let size = MIN_CACHED + 12_345;
        let params = gst::AllocationParams::new(gst::MemoryFlags::empty(), 63, 16, 32);
        let first = a.alloc(size, Some(&params)).expect("memory");
        let ptr = {
            let mut m = first;
            let mut w = m
                .get_mut()
                .expect("sole owner")
                .map_writable()
                .expect("map");
            assert_eq!(w.len(), size);
            assert_eq!(w.as_ptr() as usize % 64, 0, "aligned as asked");
            w.fill(0xAB);
            let p = w.as_ptr() as usize;
            drop(w);
            drop(m);
            p
        };
        let second = a.alloc(size, Some(&params)).expect("memory");
        let r = second.map_readable().expect("map");
        assert_eq!(r.as_ptr() as usize, ptr, "the freed block came back");
        assert!(r.iter().all(|&v| v == 0), "a reused block is zeroed");
        drop(r);

        let small = a.alloc(1000, None).expect("memory");
        assert_eq!(small.size(), 1000);
        assert_eq!(
            small.allocator(),
            gst::Allocator::find(Some("SystemMemory")).as_ref()
        );
    }

    proptest! {
        #[test]
        fn a_block_holds_the_prefix_the_aligned_region_and_the_padding(
            size in 1usize..5_000_000,
            align_bits in 0u32..13,
            prefix in 0usize..5000,
            padding in 0usize..5000,
        ) {
            let mask = (1usize << align_bits) - 1;
            let (offset, len) = block_layout(size, mask, prefix, padding).expect("fits");
            prop_assert!(offset >= prefix);
            prop_assert_eq!(offset % (mask + 1), 0);
            prop_assert!(offset + size + padding <= len);
            prop_assert_eq!(len % BLOCK_ALIGN, 0);
            prop_assert!(len < offset + size + padding + BLOCK_ALIGN);
        }
    }

    #[test]
    fn releasing_the_idle_blocks_frees_them_all_and_keeps_caching() {
        crate::media::init().expect("gstreamer");
        let a = allocator();
        let size = MIN_CACHED + 54_321; // a size of this test's own
        drop(a.alloc(size, None).expect("memory"));
        assert!(idle_bytes() >= size, "the freed block waits in the cache");
        let released = released_bytes();
        assert!(release_idle() >= size);
        assert!(released_bytes() >= released + size as u64);
        let first = a.alloc(size, None).expect("memory");
        let p = first.map_readable().expect("map").as_ptr() as usize;
        drop(first);
        let again = a.alloc(size, None).expect("memory");
        assert_eq!(
            again.map_readable().expect("map").as_ptr() as usize,
            p,
            "still caching"
        );
    }

    #[test]
    fn alignments_beyond_a_page_or_not_powers_of_two_are_not_served() {
        assert!(block_layout(MIN_CACHED, 8191, 0, 0).is_none());
        assert!(block_layout(MIN_CACHED, 5, 0, 0).is_none());
        assert!(block_layout(usize::MAX, 0, 0, 1).is_none());
    }
}
