//! A read result kept until the next write that changes it: `Cached<T>` holds one value with
//! the write generation it was read at. Writers bump the generation after their commit; a
//! reader uses the kept value only if no such write happened since it was read, and keeps a
//! fresh read only if none happened while it was reading. So a caller never sees a value
//! older than a write already answered.
//!
//! The master reads every assignment on every deployment request and scheduler pass; parsing
//! them all again each time was most of its CPU under write load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One cached read (see the module doc).
#[derive(Debug)]
pub(super) struct Cached<T> {
    generation: AtomicU64,
    kept: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            kept: Mutex::new(None),
        }
    }
}

impl<T> Cached<T> {
    /// The kept value if still current, else `read()`'s (kept if no write raced it).
    pub(super) fn get<E>(&self, read: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let before = self.generation.load(Ordering::Acquire);
        if let Some((g, v)) = self.lock().as_ref()
            && *g == before
        {
            return Ok(v.clone());
        }
        let fresh = Arc::new(read()?);
        let mut kept = self.lock();
        if self.generation.load(Ordering::Acquire) == before {
            *kept = Some((before, fresh.clone()));
        }
        Ok(fresh)
    }

    /// Marks the kept value stale: call after every committed write that changes it (and after
    /// a failed one, which may or may not have committed).
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<T>)>> {
        // The value is replaced whole under the lock: a panic elsewhere cannot leave it torn.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_value_is_read_once_until_invalidated() {
        let c = Cached::<u32>::default();
        let mut reads = 0;
        for _ in 0..3 {
            let v = c
                .get(|| {
                    reads += 1;
                    Ok::<_, ()>(7)
                })
                .unwrap();
            assert_eq!(*v, 7);
        }
        assert_eq!(reads, 1);
        c.invalidate();
        assert_eq!(*c.get(|| Ok::<_, ()>(8)).unwrap(), 8);
    }

    #[test]
    fn a_read_raced_by_a_write_is_not_kept() {
        let c = Cached::<u32>::default();
        // The write lands while the read is under way: the read's (old) value is returned to
        // its caller but not kept for the next one.
        let v = c
            .get(|| {
                c.invalidate();
                Ok::<_, ()>(1)
            })
            .unwrap();
        assert_eq!(*v, 1);
        assert_eq!(*c.get(|| Ok::<_, ()>(2)).unwrap(), 2);
    }

    #[test]
    fn a_failed_read_keeps_nothing() {
        let c = Cached::<u32>::default();
        assert!(c.get(|| Err::<u32, _>("disk")).is_err());
        assert_eq!(*c.get(|| Ok::<_, ()>(3)).unwrap(), 3);
    }
}
