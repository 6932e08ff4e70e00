//! The process's allocator (jemalloc outside Windows), its options, and the one control a
//! command may turn: how soon freed pages go back to the system.

/// jemalloc, handing back pages unused for 100 ms (purged as it next allocates: no background
/// thread), with two arenas.
///
/// glibc's malloc kept what the runtime's threads freed in holes of its arenas: a 365-day
/// backfill of 20,000 users peaked ~20 MB above a 1-day one, though its heap was only ~9 MB
/// larger; trimming glibc's arenas per partition written closed that gap but cost 40% more CPU
/// in page faults. jemalloc with these options: 1 day 40 MB, 365 days 51 MB, and the offline
/// replay ~7% less CPU than on glibc (BENCHMARKS.md). `_RJEM_MALLOC_CONF` overrides them at
/// run time, except what a command sets itself ([`hand_back_freed_pages_after`]). (mimalloc was
/// tried too: 365 days peaked at 200 MB.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol before `main` (a C `const char *`).
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: JemallocOptions =
    JemallocOptions(c"dirty_decay_ms:100,muzzy_decay_ms:0,narenas:2".as_ptr());

#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string; jemalloc only reads it.
unsafe impl Sync for JemallocOptions {}

/// Hands back to the system the pages the process frees only once unused for `after` (not
/// 100 ms), for the rest of its life.
///
/// For a one-shot batch that frees its working set and allocates it again chunk after chunk
/// (`events compact`, a chunk taking about a second): at 100 ms the pages went back between
/// chunks and were faulted in again. At 1 s, 100,000 events: 72,000-84,000 page faults instead
/// of 120,000, ~10% less CPU, the same peak; 2,000,000: 1.0 million faults instead of 2.3, 24%
/// less wall time, the same peak (283 MB against 290). Never handing them back (-1) saved a
/// little more CPU but doubled the peak at 2,000,000 (614 MB). Not for the receivers or the
/// pull, which run long or whose peaks the 100 ms keep down. Best effort: an allocator that
/// refuses leaves the options as they were.
pub fn hand_back_freed_pages_after(after: std::time::Duration) {
    let mut narenas: u32 = 0;
    let mut size = std::mem::size_of::<u32>();
    // SAFETY: a valid control name, and an old value of the type jemalloc documents for it
    // (unsigned) with its size.
    let read = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arenas.narenas".as_ptr(),
            (&raw mut narenas).cast(),
            &raw mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if read != 0 {
        return;
    }
    let ms = isize::try_from(after.as_millis()).unwrap_or(isize::MAX);
    // The arenas made so far, one by one (one not yet made refuses), then those made after.
    let names = (0..narenas)
        .map(|i| format!("arena.{i}.dirty_decay_ms"))
        .chain(["arenas.dirty_decay_ms".to_owned()]);
    for name in names {
        let name = std::ffi::CString::new(name).expect("no NUL in a control name");
        let mut ms = ms;
        // SAFETY: a valid control name, a new value of the type jemalloc documents for it
        // (ssize_t) with its size, and no old value asked for.
        unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&raw mut ms).cast(),
                std::mem::size_of::<isize>(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decay_ms(name: &std::ffi::CStr) -> isize {
        let mut ms: isize = 0;
        let mut size = std::mem::size_of::<isize>();
        // SAFETY: a valid control name, and an old value of its documented type (ssize_t).
        let read = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut ms).cast(),
                &raw mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(read, 0, "{name:?} reads");
        ms
    }

    #[test]
    fn a_command_sets_how_soon_freed_pages_go_back_for_every_arena() {
        // The options the binary starts with (read from its symbol: a build that renamed it
        // would start at jemalloc's 10 s; `_RJEM_MALLOC_CONF` set around the tests overrides).
        assert_eq!(decay_ms(c"opt.dirty_decay_ms"), 100);
        assert_eq!(decay_ms(c"arena.0.dirty_decay_ms"), 100);
        hand_back_freed_pages_after(std::time::Duration::from_secs(1));
        assert_eq!(decay_ms(c"arena.0.dirty_decay_ms"), 1000);
        assert_eq!(decay_ms(c"arenas.dirty_decay_ms"), 1000);
    }
}
