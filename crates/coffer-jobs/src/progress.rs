//! How far running work is: the engine counts files and bytes as it goes; every few seconds
//! the count is kept on the record or restore task (so a client that polls sees it) and
//! announced as a live event (`backup.progress`, `restore.progress`) — only when it moved.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use coffer_db::Db;
use coffer_types::{Event, Progress};

/// What is running.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// A backup: the record.
    Backup { job_id: String, record_id: String },
    /// A restore: the task, and the record it restores.
    Restore {
        job_id: String,
        record_id: String,
        restore_id: String,
    },
}

/// Reports the progress of one piece of work until it is dropped.
#[derive(Debug)]
pub(crate) struct Reporter {
    pub counters: Arc<coffer_repo::Progress>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Reporter {
    /// Start reporting `work`, whose total is `total_bytes` when known, every `every`.
    pub(crate) fn start(
        db: Db,
        events: tokio::sync::broadcast::Sender<Event>,
        work: Work,
        total_bytes: Option<u64>,
        every: Duration,
    ) -> Reporter {
        let counters = Arc::new(coffer_repo::Progress::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = Progress::default();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => return,
                }
                let now = Progress {
                    files: seen.files.load(Ordering::Relaxed),
                    bytes: seen.bytes.load(Ordering::Relaxed),
                    total_bytes,
                };
                if now == last {
                    continue;
                }
                report(&db, &events, &work, &now).await;
                last = now;
            }
        });
        Reporter {
            counters,
            _stop: stop,
        }
    }
}

async fn report(
    db: &Db,
    events: &tokio::sync::broadcast::Sender<Event>,
    work: &Work,
    progress: &Progress,
) {
    let (kept, event, job_id, record_id, restore_id) = match work {
        Work::Backup { job_id, record_id } => (
            db.set_record_progress(record_id, progress).await,
            "backup.progress",
            job_id,
            record_id,
            None,
        ),
        Work::Restore {
            job_id,
            record_id,
            restore_id,
        } => (
            db.set_restore_progress(restore_id, progress).await,
            "restore.progress",
            job_id,
            record_id,
            Some(restore_id.clone()),
        ),
    };
    if let Err(e) = kept {
        tracing::debug!(error = %e, "could not keep the progress");
    }
    // No subscriber is not an error.
    let _ = events.send(Event {
        event: event.to_string(),
        job_id: job_id.clone(),
        record_id: record_id.clone(),
        restore_id,
        error: None,
        progress: Some(progress.clone()),
        at: Utc::now(),
    });
}
