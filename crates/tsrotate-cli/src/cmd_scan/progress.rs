//! A progress line on stderr for scans that take more than a moment.
//!
//! Drawn only when stderr is a terminal (and not `--quiet`), and only after
//! [`QUIET_PERIOD`], so quick scans and pipelines print nothing extra. The scan runs on a
//! scoped thread; this thread wakes on each tick to read the library's counters, and at once
//! when the scan ends.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tsrotate_scan::Progress;

/// How long a scan runs before the bar appears.
const QUIET_PERIOD: Duration = Duration::from_millis(400);
/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(120);

/// Run `work`, drawing progress from `progress` meanwhile when `show` is set.
pub(crate) fn while_running<T: Send>(
    progress: &Progress,
    show: bool,
    unit: &str,
    work: impl FnOnce() -> T + Send,
) -> T {
    if !show {
        return work();
    }
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            let out = work();
            // The receiver may have stopped listening; the result is joined anyway.
            let _ = done_tx.send(());
            out
        });
        let mut bar: Option<ProgressBar> = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(TICK) {
            if started.elapsed() < QUIET_PERIOD {
                continue;
            }
            let bar = bar.get_or_insert_with(|| {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} scanning: {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            });
            let now = progress.snapshot();
            bar.set_message(format!(
                "{} {unit}, {}, {} findings",
                now.files,
                HumanBytes(now.bytes),
                now.findings
            ));
            bar.tick();
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
