//! SIGTERM, SIGINT and SIGHUP as two futures: the first signal starts the drain, the second cuts
//! it short.

/// Resolves once the signal it counts has come.
pub type Signalled = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The first and the second SIGTERM, SIGINT or SIGHUP after it is made, not after they are first
/// polled: as a container's PID 1 the bridge gets no default action for them, so the kernel drops
/// a signal that arrives before a handler exists, and a pod deleted while the bridge starts would
/// ignore its SIGTERM. SIGHUP (the terminal gone, or a supervisor's "reload") stops it the same
/// way rather than killing it mid-request: the files it could reload are read again every second
/// anyway. Call it inside the runtime.
#[cfg(unix)]
pub fn shutdown_signals() -> std::io::Result<(Signalled, Signalled)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (count, signalled) = counted();
    tokio::spawn(async move {
        for n in 1..=2 {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            count(n, name);
        }
        // Later ones are ignored (handled, so not the default action); SIGKILL remains.
        std::future::pending::<()>().await;
    });
    Ok(signalled)
}

/// Ctrl-C, where there are no Unix signals.
#[cfg(not(unix))]
pub fn shutdown_signals() -> std::io::Result<(Signalled, Signalled)> {
    let (count, signalled) = counted();
    tokio::spawn(async move {
        for n in 1..=2 {
            if tokio::signal::ctrl_c().await.is_err() {
                break;
            }
            count(n, "Ctrl-C");
        }
        std::future::pending::<()>().await;
    });
    Ok(signalled)
}

/// Where the n-th signal is told, and the futures of the first and the second.
fn counted() -> (impl Fn(u8, &str), (Signalled, Signalled)) {
    let (tx, rx) = tokio::sync::watch::channel(0u8);
    let count = move |n: u8, name: &str| {
        if n == 1 {
            tracing::info!("{name} received");
        } else {
            tracing::info!("{name} received again");
        }
        let _ = tx.send(n);
    };
    let nth = |n: u8| -> Signalled {
        let mut rx = rx.clone();
        Box::pin(async move {
            if rx.wait_for(|seen| *seen >= n).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    };
    (count, (nth(1), nth(2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    fn ready(signalled: &mut Signalled) -> bool {
        let waker = std::task::Waker::noop();
        matches!(
            signalled.as_mut().poll(&mut Context::from_waker(waker)),
            Poll::Ready(())
        )
    }

    #[tokio::test]
    async fn the_first_signal_resolves_only_the_first_future_and_the_second_both() {
        let (count, (mut first, mut second)) = counted();
        assert!(!ready(&mut first) && !ready(&mut second), "before any");
        count(1, "SIGTERM");
        assert!(ready(&mut first), "the drain starts");
        assert!(!ready(&mut second), "and is not cut yet");
        count(2, "SIGINT");
        assert!(ready(&mut second), "the second cuts it");
    }

    /// Two signals before the first future is polled (a SIGTERM and a SIGINT while `dev-kafka`
    /// starts its cluster, before it waits for the first) still resolve it: waiting for exactly
    /// one signal would wait forever.
    #[tokio::test]
    async fn the_first_future_polled_only_after_the_second_signal_resolves_too() {
        let (count, (mut first, mut second)) = counted();
        count(1, "SIGTERM");
        count(2, "SIGINT");
        assert!(ready(&mut second));
        assert!(ready(&mut first), "the second signal hid the first");
    }
}
