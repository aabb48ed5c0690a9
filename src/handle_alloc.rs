//! Memory for `Handle` objects: a free list kept under the GIL.
//!
//! Every `call_soon` allocates a handle and every callback run frees one.
//! PyO3's own free list (`#[pyclass(freelist = N)]`) takes a mutex on each
//! allocation and each release, on top of a lazily initialised cell. The
//! GIL already serialises both, so this list is a plain vector behind a
//! `GilCell`, installed as the type's `tp_alloc` / `tp_free`.
//!
//! Exact `Handle` and `TimerHandle` instances use it (one list: the two have
//! the same size, checked at install); Python subclasses keep their own
//! allocation. A timer fired or dropped goes back here, so a steady stream
//! of `call_later` reuses memory without PyO3's locked free list. As with any free list, a reused
//! object skips the collector's allocation count, which objects that are
//! created and dropped in pairs would only push towards needless collections.
//!
//! The list grows to the size of a burst (up to `CAPACITY`) and is cut back
//! to `KEEP` when the loop goes quiet (`trim`). A burst is e.g. a producer
//! thread's `call_soon_threadsafe` calls during one GIL switch interval
//! (5 ms, tens of thousands of handles) that the loop then runs: with a
//! short list, every handle past it went back to the object allocator, whose
//! emptied arenas went back to the OS and were faulted in again by the next
//! burst. Kept across the burst, the same memory is reused.
//!
//! One step further, a one-shot `Handle` that the loop lets go of after its
//! run while nobody else holds it (its reference count is the loop's one)
//! is not deallocated at all: it is emptied (callback and context released,
//! the context slot holding `None`) and kept whole in `POOL`, and the next
//! `call_soon` / `call_soon_threadsafe` fills it again (`take_pooled`). No
//! one can tell: nothing else references the object, it has no weak
//! references (checked), and its memory would have been reused the same way
//! through the free list. What that skips per callback is PyO3's object
//! creation (the base type's `tp_new`, its argument tuple, the contents
//! written in place) and its deallocation (trampoline, thread-local
//! lookups, `tp_free`). Debug-mode handles, timer handles and anything
//! held elsewhere go the ordinary way.

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyTypeInfo;

use crate::gil_cell::GilCell;
use crate::handles::{Handle, TimerHandle};

/// How many freed handles are kept for reuse while the loop is busy
/// (at most ~7 MiB).
const CAPACITY: usize = 64 * 1024;

/// How many of them stay once the loop goes quiet (see `trim`).
const KEEP: usize = 1024;

struct FreeObjects(Vec<NonNull<ffi::PyObject>>);

// SAFETY: the pointers are to freed handle objects that nothing references;
// they are only handed out again under the GIL (the `GilCell`).
unsafe impl Send for FreeObjects {}

static FREE: GilCell<FreeObjects> = GilCell::new(FreeObjects(Vec::new()));

/// How many emptied handles `POOL` keeps. Bounded well below `CAPACITY`:
/// a pooled handle that is never refilled (a batch of a million
/// `call_soon`s run once) is deallocated later, at the next `trim`, which
/// costs more than deallocating it when it ran (~40 instructions more per
/// handle); a steady producer reuses what one iteration released in the
/// next. 4,096 was too few for a producer thread's burst on 3.14 (half of
/// its posts then missed the pool under callgrind).
const POOL_CAPACITY: usize = 16 * 1024;

/// Emptied one-shot handles, whole objects ready to be filled again (see
/// the module's notes). Each is untracked by the collector and referenced
/// only from here.
static POOL: GilCell<Vec<Py<Handle>>> = GilCell::new(Vec::new());

/// Where `Handle`'s weak reference list lives in its objects (0: unknown,
/// then nothing is pooled).
static WEAKLIST_OFFSET: AtomicIsize = AtomicIsize::new(0);

/// The `Handle` type object, set by `install`.
static HANDLE_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());
/// The `TimerHandle` type object, set by `install` when its instances have
/// `Handle`'s size (null otherwise: it then keeps the default allocation).
static TIMER_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// Whether `ty` is one of the types whose instances the list holds.
#[inline]
fn listed(ty: *mut ffi::PyTypeObject) -> bool {
    ty == HANDLE_TYPE.load(Ordering::Relaxed) || ty == TIMER_TYPE.load(Ordering::Relaxed)
}

/// Makes `Handle` and `TimerHandle` allocate from and release to the free
/// list.
pub(crate) fn install(py: Python<'_>) {
    let ty = Handle::type_object_raw(py);
    let timer = TimerHandle::type_object_raw(py);
    HANDLE_TYPE.store(ty, Ordering::Relaxed);
    FREE.borrow_mut(py).0.reserve(KEEP);
    // SAFETY: `ty` is a ready type object; this reads one field.
    let weaklist = unsafe { (*ty).tp_weaklistoffset };
    if weaklist > 0 {
        WEAKLIST_OFFSET.store(weaklist, Ordering::Relaxed);
    }
    // SAFETY: `ty` and `timer` are the ready, live heap types; replacing
    // their allocation slots before any instance exists is what a C
    // extension does in its type's setup. The two functions are a matching
    // pair for GC objects of the type's basic size, which is the same for
    // both types when `timer` is installed (checked just before).
    unsafe {
        (*ty).tp_alloc = Some(handle_alloc);
        (*ty).tp_free = Some(handle_free);
        if (*timer).tp_basicsize == (*ty).tp_basicsize && (*timer).tp_itemsize == 0 {
            TIMER_TYPE.store(timer, Ordering::Relaxed);
            (*timer).tp_alloc = Some(handle_alloc);
            (*timer).tp_free = Some(handle_free);
        }
    }
}

unsafe extern "C" fn handle_alloc(
    subtype: *mut ffi::PyTypeObject,
    nitems: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    if nitems == 0 && listed(subtype) {
        // SAFETY: CPython allocates with the GIL held.
        let py = unsafe { Python::assume_attached() };
        let reused = FREE.borrow_mut(py).0.pop();
        if let Some(obj) = reused {
            let obj = obj.as_ptr();
            // SAFETY: `obj` is a released (untracked, unreferenced) handle of
            // one of the listed types, which all have this size; the header
            // is set up again (type reference and reference count). The body
            // is not zeroed: the only caller, PyO3's object creation, writes
            // all of it (the value and every slot after it) before anything
            // reads it, and the object is untracked, so the collector cannot
            // look at it before then.
            unsafe {
                ffi::PyObject_Init(obj, subtype);
            }
            return obj;
        }
    }
    // SAFETY: the default allocation for GC types, with the caller's arguments.
    unsafe { ffi::PyType_GenericAlloc(subtype, nitems) }
}

unsafe extern "C" fn handle_free(obj: *mut c_void) {
    let Some(nn) = NonNull::new(obj.cast::<ffi::PyObject>()) else {
        return;
    };
    // SAFETY: tp_free gets a deallocated object whose type is still alive
    // (the deallocator drops its type reference after this call).
    let ty = unsafe { ffi::Py_TYPE(nn.as_ptr()) };
    if listed(ty) {
        // A fired or dropped timer fills the list up to `KEEP` only: a
        // million timers let go of at once (a cancelled batch, a loop
        // closed) should not leave the list holding 64k of them until the
        // loop goes quiet; a steady `call_later` stream needs no more.
        let cap = if ty == TIMER_TYPE.load(Ordering::Relaxed) {
            KEEP
        } else {
            CAPACITY
        };
        // SAFETY: CPython frees objects with the GIL held.
        let py = unsafe { Python::assume_attached() };
        let mut free = FREE.borrow_mut(py);
        if free.0.len() < cap {
            free.0.push(nn);
            return;
        }
    }
    // SAFETY: the type is a GC type allocated by PyType_GenericAlloc (or
    // reused from this list, which only holds such objects).
    unsafe { ffi::PyObject_GC_Del(obj) }
}

/// Releases the kept handles beyond `KEEP`. The loop calls it when it goes
/// quiet: a poll that waited and timed out with nothing to report, or
/// `close()`.
pub(crate) fn trim(py: Python<'_>) {
    let pooled = {
        let mut pool = POOL.borrow_mut(py);
        if pool.len() > KEEP {
            let excess = pool.split_off(KEEP);
            pool.shrink_to(KEEP);
            excess
        } else {
            Vec::new()
        }
    };
    // Deallocated as `Bound`s, at once; their memory goes to `FREE` (and
    // its excess beyond `KEEP` away just below).
    for handle in pooled {
        drop(handle.into_bound(py));
    }
    let excess = {
        let mut free = FREE.borrow_mut(py);
        if free.0.len() <= KEEP {
            return;
        }
        let excess = free.0.split_off(KEEP);
        free.0.shrink_to(KEEP);
        excess
    };
    for obj in excess {
        // SAFETY: the list holds only released handles of the listed types,
        // allocated as GC objects (see `handle_free`); nothing references them.
        unsafe { ffi::PyObject_GC_Del(obj.as_ptr().cast()) }
    }
}

/// A pooled handle to fill again (`Handle::reinit`), if any. It is
/// untracked by the collector and its only reference is the one returned.
#[inline]
pub(crate) fn take_pooled(py: Python<'_>) -> Option<Bound<'_, Handle>> {
    POOL.borrow_mut(py).pop().map(|h| h.into_bound(py))
}

/// Puts back a handle `take_pooled` gave that was not filled after all.
pub(crate) fn return_pooled(py: Python<'_>, handle: Bound<'_, Handle>) {
    POOL.borrow_mut(py).push(handle.unbind());
}

/// Lets go of the loop's reference to a one-shot handle that ran or was
/// cancelled, the only reference left (the caller checked). When the handle
/// is a plain `Handle` without debug parts or weak references and the pool
/// has room, it is emptied and pooled instead of deallocated (see the
/// module's notes); otherwise it is dropped as usual.
#[inline(always)]
pub(crate) fn release(py: Python<'_>, handle: Bound<'_, Handle>) {
    let obj = handle.as_ptr();
    let weaklist = WEAKLIST_OFFSET.load(Ordering::Relaxed);
    // SAFETY: `obj` is a live object we hold a reference to: reading its
    // type is always allowed, and for an exact `Handle` the weak reference
    // list pointer lies at the type's `tp_weaklistoffset` (read at
    // install; 0 disables pooling).
    let alone = unsafe {
        ffi::Py_TYPE(obj) == HANDLE_TYPE.load(Ordering::Relaxed)
            && weaklist > 0
            && (*obj
                .cast::<u8>()
                .offset(weaklist)
                .cast::<*mut ffi::PyObject>())
            .is_null()
    };
    debug_assert!(
        // SAFETY: as above.
        unsafe { ffi::Py_REFCNT(obj) } == 1,
        "the loop's reference is the only one"
    );
    if !alone || !handle.get().reusable() {
        drop(handle);
        return;
    }
    let (callback, context) = {
        let mut pool = POOL.borrow_mut(py);
        if pool.len() >= POOL_CAPACITY {
            drop(pool);
            drop(handle);
            return;
        }
        // SAFETY: the loop's reference is the only one (checked above, with
        // the GIL held: no other thread can take a new one meanwhile), the
        // handle has no debug parts and is not a timer (`reusable`). It runs
        // no Python code (the pool stays borrowed).
        let parts = unsafe { handle.get().take_for_reuse(py) };
        pool.push(handle.unbind());
        parts
    };
    // Released after the handle is stored: these may run Python code,
    // which may schedule callbacks (and take the handle from the pool).
    if let Some(cb) = callback {
        drop(cb.func.into_bound(py));
        cb.args.release(py);
    }
    drop(context.into_bound(py));
}
