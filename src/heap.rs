//! The C heap that libtorch, SQLite and the service share (glibc's malloc on Linux): how many arenas it
//! may keep, giving freed memory back to the system, and what it holds (for `/metrics`).
//!
//! glibc gives each thread that contends for the heap an arena of its own (up to 8 per core) and keeps
//! memory freed inside an arena for reuse; with tensors of many sizes freed by many threads, resident
//! memory creeps up although nothing leaks. [`tune`] caps the arenas, and a periodic [`trim`] returns the
//! free pages. Elsewhere these are no-ops and [`stats`] is `None`.

/// Heap figures from `mallinfo2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in blocks handed out (arenas and mmapped blocks).
    pub in_use: u64,
    /// Bytes held by the heap but free.
    pub free: u64,
}

/// Cap the arenas (call first thing in `main`, before threads start): `arenas` of them at most.
pub fn tune(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; M_ARENA_MAX takes a positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas.max(1));
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Give free heap pages back to the system; returns whether any were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' locks itself and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// What the heap holds now.
pub fn stats() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads the allocator's counters; it takes no pointers.
        let m = unsafe { libc::mallinfo2() };
        Some(HeapStats { in_use: (m.uordblks + m.hblkhd) as u64, free: m.fordblks as u64 })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Resident memory of this process, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_and_trimmed_memory_leaves_the_process() {
        let (Some(_), Some(rss0)) = (super::stats(), super::resident_bytes()) else { return };
        // 200 MiB in blocks under the mmap threshold, so that they live in a heap arena.
        let blocks: Vec<Vec<u8>> = (0..3200).map(|i| vec![1 + (i % 200) as u8; 64 * 1024 - 64]).collect();
        let held = super::stats().unwrap();
        assert!(held.in_use >= 200 << 20, "{held:?}");
        assert!(super::resident_bytes().unwrap() >= rss0 + (150 << 20));
        drop(blocks);
        super::trim();
        let rss = super::resident_bytes().unwrap();
        assert!(rss < rss0 + (32 << 20), "resident {} MiB after trimming, {} MiB before", rss >> 20, rss0 >> 20);
    }
}
