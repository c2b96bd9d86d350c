//! A per-client sliding-window limit: at most `max` attempts in any `window`. Used for login
//! (by address), where it makes password guessing slow, and for snapshots of the metadata
//! database (by admin); memory stays bounded by forgetting idle clients.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter<K = Option<IpAddr>> {
    max: usize,
    window: Duration,
    attempts: Mutex<HashMap<K, VecDeque<Instant>>>,
}

/// Clients remembered before idle ones are forgotten.
const TRACKED_CLIENTS: usize = 10_000;

impl<K: Eq + Hash> RateLimiter<K> {
    pub fn new(max: usize, window: Duration) -> RateLimiter<K> {
        RateLimiter {
            max,
            window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Count an attempt by `client`; `Err(seconds)` if it is over the limit, with how long
    /// until the next attempt is allowed.
    pub fn attempt(&self, client: K) -> Result<(), u64> {
        let now = Instant::now();
        let mut all = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= TRACKED_CLIENTS {
            all.retain(|_, q| q.back().is_some_and(|t| now - *t < self.window));
        }
        let q = all.entry(client).or_default();
        while q.front().is_some_and(|t| now - *t >= self.window) {
            q.pop_front();
        }
        if q.len() >= self.max {
            let oldest = *q.front().expect("at the limit, so not empty");
            let wait = self.window.saturating_sub(now - oldest);
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_per_window_per_client() {
        let l = RateLimiter::<Option<IpAddr>>::new(3, Duration::from_secs(60));
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        for _ in 0..3 {
            l.attempt(a).unwrap();
        }
        let wait = l.attempt(a).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        l.attempt(b).unwrap();
        let short = RateLimiter::new(1, Duration::from_millis(20));
        short.attempt(a).unwrap();
        assert!(short.attempt(a).is_err());
        std::thread::sleep(Duration::from_millis(25));
        short.attempt(a).unwrap();
    }
}
