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
    let Some(narenas) = read::<u32>(c"arenas.narenas") else {
        return;
    };
    let ms = isize::try_from(after.as_millis()).unwrap_or(isize::MAX);
    // The arenas made so far, one by one (one not yet made refuses), then those made after.
    let names = (0..narenas)
        .map(|i| format!("arena.{i}.dirty_decay_ms"))
        .chain(["arenas.dirty_decay_ms".to_owned()]);
    for name in names {
        let name = std::ffi::CString::new(name).expect("no NUL in a control name");
        write(&name, ms);
    }
}

/// A control's value, `T` being the type jemalloc documents for it; `None` if it refuses.
fn read<T: Default>(name: &std::ffi::CStr) -> Option<T> {
    let mut value = T::default();
    let mut size = std::mem::size_of::<T>();
    // SAFETY: a C string for the name, and room for a `T` with its size, the type the caller
    // names for this control.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&raw mut value).cast(),
            &raw mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0).then_some(value)
}

/// Sets a control to `value`, `T` being the type jemalloc documents for it; a control that
/// refuses keeps its value.
fn write<T>(name: &std::ffi::CStr, mut value: T) {
    // SAFETY: a C string for the name, a `T` with its size, the type the caller names for this
    // control, and no old value asked for.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&raw mut value).cast(),
            std::mem::size_of::<T>(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_sets_how_soon_freed_pages_go_back_for_every_arena() {
        // The options the binary starts with (read from its symbol: a build that renamed it
        // would start at jemalloc's 10 s; `_RJEM_MALLOC_CONF` set around the tests overrides).
        assert_eq!(read::<isize>(c"opt.dirty_decay_ms"), Some(100));
        assert_eq!(read::<isize>(c"arena.0.dirty_decay_ms"), Some(100));
        hand_back_freed_pages_after(std::time::Duration::from_secs(1));
        assert_eq!(read::<isize>(c"arena.0.dirty_decay_ms"), Some(1000));
        assert_eq!(read::<isize>(c"arenas.dirty_decay_ms"), Some(1000));
    }
}
