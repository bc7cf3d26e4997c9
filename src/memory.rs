//! The allocator, and how the bounded-memory paths (`ingest`, `import`, `serve`'s
//! in-process ingest) use it.

/// jemalloc rather than glibc's malloc: import and ingest allocate and free a few
/// strings per event on one thread and free them on others, where glibc spent ~17 % of
/// the CPU of a city import in malloc/free and consolidation. Measured on the 10 GB
/// city file: 70.2 s and 1.25 GB peak RSS with glibc, 56-62 s and 1.02 GB with
/// jemalloc (docs/benchmarks.md). mimalloc was tried before and used more memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long the arena of [`bounded_runtime`] keeps freed pages for reuse before giving
/// them back (jemalloc's default is 10 s). A flush every half second or so frees tens
/// of MB of buffers; kept 10 s, the pages of the flushes before stayed resident beside
/// the next ones. On the 12.4 M-event backlog (one arena): 492 MiB peak with 10 s,
/// 459-470 with 300 ms at about the same rate, 424 with 0 but each free then costs
/// page faults on the next allocation (docs/benchmarks.md, session 17).
const DIRTY_DECAY_MS: isize = 300;

/// Binds the calling thread to jemalloc's first arena. jemalloc gives threads 4
/// arenas a core, each keeping the pages freed in it for reuse in it alone, and a
/// flush's buffers, allocated on one thread and freed on another, left the freed pages
/// of up to 8 arenas resident at once: the 12.4 M-event backlog peaked at 510-537 MiB
/// with them, 486-501 with one arena, at the same rate (docs/benchmarks.md, session
/// 17). Best effort: a thread left unbound only costs memory.
fn one_arena() {
    // SAFETY: `thread.arena` is an `unsigned`, which `u32` is on every target jemalloc
    // builds for; the name is NUL-terminated.
    let bound = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.arena\0", 0u32) };
    if let Err(e) = bound {
        tracing::debug!(error = %e, "thread not bound to jemalloc's first arena");
    }
}

/// Largest block glibc's malloc serves from its heaps rather than mapping it alone, and
/// how much free memory a heap keeps at its top before giving it back. Only C code
/// allocates with glibc here (Rust uses jemalloc): librdkafka, whose fetch responses and
/// LZ4 output are blocks of a few MiB. glibc's defaults (128 KiB, raised as mapped
/// blocks are freed) mapped and unmapped such blocks one after another, and the kernel
/// zeroed fresh pages for each: a 2 M-event ingest took 7.5 % less CPU and 9 % fewer
/// page faults with these values (8 pairs), its peak 21 MiB higher; the 12.4 M-event
/// backlog peaked as before, at 476 MiB (docs/benchmarks.md, session 19).
/// The heap kept is bounded by librdkafka's own bounds (`queued.max.messages.kbytes`,
/// `fetch.max.bytes`). 32 MiB is glibc's own ceiling for the threshold it raises by itself
/// on 64-bit.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_HEAP_BLOCK: libc::c_int = 32 << 20;

/// Applies [`C_HEAP_BLOCK`] to glibc's malloc; the name of the first setting it refused.
fn steady_c_heap() -> Result<(), &'static str> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets malloc's parameters, under malloc's own lock.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, C_HEAP_BLOCK) } != 1 {
            return Err("M_MMAP_THRESHOLD");
        }
        // SAFETY: as above.
        if unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, C_HEAP_BLOCK) } != 1 {
            return Err("M_TRIM_THRESHOLD");
        }
    }
    Ok(())
}

/// The async runtime of `ingest` and `import` (and of `serve`'s in-process ingest),
/// which promise bounded memory: its threads, the global decoding pool's and the
/// calling thread share one arena ([`one_arena`]) that returns freed pages within
/// [`DIRTY_DECAY_MS`]; the C heap keeps blocks of librdkafka's size
/// ([`steady_c_heap`]). Other commands (queries on many cores) keep jemalloc's
/// defaults, where more arenas mean less waiting on one another.
pub fn bounded_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // SAFETY: `arena.0.dirty_decay_ms` is an `ssize_t`, which `isize` is; the name is
    // NUL-terminated.
    let decay =
        unsafe { tikv_jemalloc_ctl::raw::write(b"arena.0.dirty_decay_ms\0", DIRTY_DECAY_MS) };
    if let Err(e) = decay {
        tracing::debug!(error = %e, "jemalloc's first arena keeps its decay time");
    }
    if let Err(setting) = steady_c_heap() {
        tracing::debug!(setting, "glibc's malloc keeps its default");
    }
    one_arena();
    // Already built when a command runs twice in one process: its threads keep the
    // arenas they have.
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| one_arena())
        .build_global();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(one_arena)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> u32 {
        // SAFETY: `thread.arena` is an `unsigned`; the name is NUL-terminated.
        unsafe { tikv_jemalloc_ctl::raw::read(b"thread.arena\0") }.expect("thread.arena")
    }

    /// Every thread of the bounded runtime allocates in arena 0, which gives freed
    /// pages back within the decay time; a thread started elsewhere does not.
    #[test]
    fn the_bounded_runtime_allocates_in_one_arena_with_a_short_decay() {
        // A thread of its own, bound to an arena other than 0 like any other, so that
        // the calling thread's binding is seen to change.
        std::thread::spawn(|| {
            // SAFETY: as in `one_arena`.
            unsafe { tikv_jemalloc_ctl::raw::write(b"thread.arena\0", 1u32) }.unwrap();
            assert_eq!(arena(), 1);
            let runtime = bounded_runtime().unwrap();
            assert_eq!(arena(), 0, "the calling thread");
            let worker = runtime.block_on(async { tokio::spawn(async { arena() }).await });
            assert_eq!(worker.unwrap(), 0, "a runtime worker");
            let blocking = runtime.block_on(async { tokio::task::spawn_blocking(arena).await });
            assert_eq!(blocking.unwrap(), 0, "a blocking thread");
            let (tx, rx) = std::sync::mpsc::channel();
            rayon::spawn(move || tx.send(arena()).unwrap());
            assert_eq!(rx.recv().unwrap(), 0, "a decoding-pool thread");
        })
        .join()
        .unwrap();
        // SAFETY: `arena.0.dirty_decay_ms` is an `ssize_t`; the name is NUL-terminated.
        let decay: isize =
            unsafe { tikv_jemalloc_ctl::raw::read(b"arena.0.dirty_decay_ms\0") }.unwrap();
        assert_eq!(decay, DIRTY_DECAY_MS);
        let elsewhere = std::thread::spawn(|| {
            // SAFETY: as in `one_arena`.
            unsafe { tikv_jemalloc_ctl::raw::write(b"thread.arena\0", 1u32) }.unwrap();
            arena()
        });
        assert_eq!(elsewhere.join().unwrap(), 1, "other threads choose freely");
    }

    /// After the settings, a block of a fetch response's size comes from glibc's heap,
    /// not from a mapping of its own (glibc marks a mapped block in its size word).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_keeps_blocks_of_librdkafkas_size_in_its_heaps() {
        assert_eq!(steady_c_heap(), Ok(()));
        const IS_MMAPPED: usize = 0x2;
        // SAFETY: the block is glibc's, freed once; the word before it is its size word
        // (chunk layout of glibc's malloc), read while the block is live.
        let size_word = unsafe {
            let block = libc::malloc(24 << 20);
            assert!(!block.is_null());
            let word = *block.cast::<usize>().sub(1);
            libc::free(block);
            word
        };
        assert_eq!(size_word & IS_MMAPPED, 0, "a 24 MiB block was mapped alone");
    }
}
