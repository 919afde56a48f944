//! Rate limiting of log lines a peer can trigger.

/// Allows `burst` events, refilled at `per_minute` per minute; counts what it suppressed.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    burst: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: u64,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter starting full.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_ms: f64::from(per_minute) / 60_000.0,
            tokens: f64::from(burst),
            last_ms: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now; `Some(n)` carries how many were suppressed since the last allowed one.
    pub fn allow(&mut self, now_ms: u64) -> Option<u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = now_ms;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_throttles_then_refills() {
        let mut l = LogLimiter::new(2, 60);
        assert_eq!(l.allow(1), Some(0));
        assert_eq!(l.allow(2), Some(0));
        assert_eq!(l.allow(3), None);
        assert_eq!(l.allow(4), None);
        assert_eq!(l.allow(1_004), Some(2));
    }
}
