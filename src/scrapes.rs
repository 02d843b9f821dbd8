//! The scrapes of `/metrics` seen so far: after a failure that stops the bridge, the exit waits for
//! the next one, so that Prometheus reads the counter that says why before the process is gone.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The least wait for a scrape after a failure, whatever interval the scrapes so far showed
/// (two scrapes close together, by hand, say little of the scraper's interval).
const LEAST: Duration = Duration::from_secs(5);

/// The most, for a scraper that has gone quiet: a restart should not wait on it for longer.
const MOST: Duration = Duration::from_secs(120);

/// With one scrape seen, no interval is known yet: Prometheus's default interval is 1 minute.
const ONE_SEEN: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Scrapes {
    seen: Mutex<Seen>,
    served: Notify,
}

/// How many of the last intervals between scrapes the wait goes by.
const INTERVALS: usize = 4;

#[derive(Debug, Default)]
struct Seen {
    last: Option<Instant>,
    /// The last [`INTERVALS`] intervals, the latest at the back.
    intervals: std::collections::VecDeque<Duration>,
}

impl Scrapes {
    /// A scrape was answered.
    pub fn served(&self) {
        let now = Instant::now();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = seen.last {
                if seen.intervals.len() == INTERVALS {
                    seen.intervals.pop_front();
                }
                seen.intervals.push_back(now - last);
            }
            seen.last = Some(now);
        }
        self.served.notify_waiters();
    }

    /// How long to wait for the next scrape: not at all when nothing scrapes this process (a
    /// run without Prometheus should exit at once), else half as long again as the longest of
    /// the last intervals between two scrapes, within [`LEAST`] and [`MOST`]. The longest: two
    /// scrapers (a Prometheus pair, or someone's `curl`) make some intervals short, and one of
    /// them may be the last.
    pub(crate) fn patience(&self) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.last?;
        let wait = seen.intervals.iter().max().map_or(ONE_SEEN, |&i| i + i / 2);
        Some(wait.clamp(LEAST, MOST))
    }

    /// Resolves at the next scrape, or once the wait [`Scrapes::patience`] allows is over.
    pub async fn next(&self) {
        let notified = self.served.notified();
        tokio::pin!(notified);
        // Registered before the patience is read: a scrape in between still wakes it.
        notified.as_mut().enable();
        if let Some(patience) = self.patience() {
            let _ = tokio::time::timeout(patience, notified).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nothing_is_awaited_when_nothing_scrapes() {
        let scrapes = Scrapes::default();
        let start = Instant::now();
        scrapes.next().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_next_scrape() {
        let scrapes = std::sync::Arc::new(Scrapes::default());
        scrapes.served();
        tokio::time::advance(Duration::from_secs(30)).await;
        scrapes.served();
        let start = Instant::now();
        let waiting = tokio::spawn({
            let scrapes = scrapes.clone();
            async move { scrapes.next().await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiting.is_finished());
        scrapes.served();
        waiting.await.expect("waiter");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    /// How long a stop waits after two scrapes `interval` apart and none since.
    async fn waited_after(interval: Duration) -> Duration {
        let scrapes = Scrapes::default();
        scrapes.served();
        tokio::time::advance(interval).await;
        scrapes.served();
        let start = Instant::now();
        scrapes.next().await;
        start.elapsed()
    }

    /// The bounds in seconds, not by their names: the README and the log line at the stop give
    /// them (at least 5 s, at most 2 min, 1 min after a single scrape), and a test comparing with
    /// the constants passed with any value of them (found by mutation testing).
    #[tokio::test(start_paused = true)]
    async fn a_scraper_gone_quiet_is_awaited_half_its_interval_again_within_bounds() {
        let scrapes = Scrapes::default();
        scrapes.served();
        let start = Instant::now();
        scrapes.next().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(60),
            "one scrape: no interval yet"
        );

        assert_eq!(
            waited_after(Duration::from_secs(30)).await,
            Duration::from_secs(45)
        );
        assert_eq!(
            waited_after(Duration::from_millis(100)).await,
            Duration::from_secs(5),
            "scrapes by hand"
        );
        assert_eq!(
            waited_after(Duration::from_secs(600)).await,
            Duration::from_secs(120)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_scraper_close_behind_the_first_does_not_shorten_the_wait() {
        // A Prometheus pair scraping every 30 s, the second 2 s after the first.
        let scrapes = Scrapes::default();
        for gap in [0, 2, 28, 2] {
            tokio::time::advance(Duration::from_secs(gap)).await;
            scrapes.served();
        }
        let start = Instant::now();
        scrapes.next().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(42),
            "half the 28 s again"
        );
        // Once the long intervals (the 42 s waited included) are older than the last four,
        // they no longer count.
        for _ in 0..=INTERVALS {
            tokio::time::advance(Duration::from_secs(10)).await;
            scrapes.served();
        }
        let start = Instant::now();
        scrapes.next().await;
        assert_eq!(start.elapsed(), Duration::from_secs(15));
    }
}
