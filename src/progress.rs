//! Progress of a running job: bars on a terminal, a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attendance_pull::RunProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Renders a run's progress from a thread of its own until finished.
pub struct Reporter {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn spawn(progress: Arc<RunProgress>) -> Reporter {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            if std::io::stderr().is_terminal() {
                bars(&progress, &stop);
            } else {
                lines(&progress, &stop);
            }
        });
        Reporter {
            done,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bars(progress: &RunProgress, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let windows = multi.add(
        ProgressBar::new(0)
            .with_style(style.clone())
            .with_prefix("windows"),
    );
    let queries = multi.add(
        ProgressBar::new(0)
            .with_style(style)
            .with_prefix("requests"),
    );
    let started = Instant::now();
    loop {
        let snap = progress.snapshot();
        windows.set_length(snap.windows_total);
        windows.set_position(snap.windows_done);
        queries.set_length(snap.queries_total.max(snap.queries_done));
        queries.set_position(snap.queries_done);
        let rate = snap.queries_done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        queries.set_message(format!("{} rows, {rate:.1} req/s", snap.rows));
        if stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    windows.finish_and_clear();
    queries.finish_and_clear();
}

fn lines(progress: &RunProgress, stop: &AtomicBool) {
    let started = Instant::now();
    let mut next = started + LOG_EVERY;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += LOG_EVERY;
        let snap = progress.snapshot();
        let rate = snap.queries_done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            windows_done = snap.windows_done,
            windows = snap.windows_total,
            requests_done = snap.queries_done,
            requests = snap.queries_total,
            rows = snap.rows,
            rate = format!("{rate:.1}/s"),
            "progress"
        );
    }
}
