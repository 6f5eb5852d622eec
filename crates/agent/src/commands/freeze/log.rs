//! Keeps the agent's log off frozen filesystems.
//!
//! A write to a log file on a frozen filesystem blocks until the thaw, and an agent blocked on
//! its log cannot serve the thaw (qemu-ga stops logging while frozen for this reason). porthole
//! holds log lines in memory while frozen instead: up to [`HELD_LIMIT`] bytes; later lines are
//! dropped and counted. At the thaw the held lines are written, then a note of how many were
//! dropped. Standard error gets the same treatment: it may be redirected to a file too.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of log held while frozen; the rest is dropped.
pub const HELD_LIMIT: usize = 64 << 10;

static FROZEN: AtomicBool = AtomicBool::new(false);
static HELD: Mutex<Held> = Mutex::new(Held {
    bytes: Vec::new(),
    dropped: 0,
});

struct Held {
    bytes: Vec<u8>,
    dropped: u64,
}

/// Starts (true) or stops (false) holding log lines back.
pub fn set_frozen(frozen: bool) {
    FROZEN.store(frozen, Ordering::SeqCst);
}

fn held() -> MutexGuard<'static, Held> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A log destination that holds lines back while filesystems are frozen.
pub struct Gate<W> {
    inner: Mutex<W>,
}

impl<W: Write> Gate<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner: Mutex::new(inner),
        }
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Gate<W> {
    type Writer = GateWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        GateWriter { gate: self }
    }
}

pub struct GateWriter<'a, W> {
    gate: &'a Gate<W>,
}

impl<W: Write> Write for GateWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if FROZEN.load(Ordering::SeqCst) {
            let mut held = held();
            if held.bytes.len() + buf.len() <= HELD_LIMIT {
                held.bytes.extend_from_slice(buf);
            } else {
                // tracing writes one event per call: count each as (at least) one line.
                held.dropped += buf.iter().filter(|b| **b == b'\n').count().max(1) as u64;
            }
            return Ok(buf.len());
        }
        let mut inner = self
            .gate
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut *inner)?;
        inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if FROZEN.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.gate
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

/// Writes what was held back while frozen, and the count of dropped lines.
fn release(out: &mut impl Write) -> io::Result<()> {
    let (bytes, dropped) = {
        let mut held = held();
        if held.bytes.is_empty() && held.dropped == 0 {
            return Ok(());
        }
        (
            std::mem::take(&mut held.bytes),
            std::mem::take(&mut held.dropped),
        )
    };
    out.write_all(&bytes)?;
    if dropped > 0 {
        writeln!(
            out,
            "porthole-agent: {dropped} log line(s) dropped while frozen"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn held_while_frozen_then_released() -> io::Result<()> {
        let out = Shared::default();
        let gate = Gate::new(out.clone());
        let text = || {
            String::from_utf8_lossy(&out.0.lock().map(|v| v.clone()).unwrap_or_default())
                .into_owned()
        };
        gate.make_writer().write_all(b"before\n")?;
        set_frozen(true);
        gate.make_writer().write_all(b"while frozen\n")?;
        let big = vec![b'x'; HELD_LIMIT];
        gate.make_writer().write_all(&big)?;
        assert_eq!(
            text(),
            "before\n",
            "nothing reaches the destination while frozen"
        );
        set_frozen(false);
        gate.make_writer().write_all(b"after\n")?;
        assert_eq!(
            text(),
            "before\nwhile frozen\nporthole-agent: 1 log line(s) dropped while frozen\nafter\n"
        );
        Ok(())
    }
}
