//! Notifications: channels (a resource: checked when made, their secret parts sealed), and
//! telling them what happened.
//!
//! Two tasks run beside the scheduler: one listens to the job service's events and writes a
//! notification (a row) for each enabled channel that chose the event; the other delivers the
//! rows that are due, one attempt at a time, and on a failure tries again later, waiting longer
//! each time (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h: about eight hours in all) before
//! giving up. Every attempt is kept with the row (`GET /api/notifications`). Nothing here
//! waits on a receiver where a backup could notice: a backup only sends an event.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use coffer_db::{DueNotification, NewNotification};
use coffer_notify::{Message, NotifyError, Secret};
use coffer_types::{
    ChannelInput, ChannelUpdate, Check, DeliveryAttempt, EVENTS, Event, Notification,
    NotificationChannel,
};

use crate::resources::Managed;
use crate::spec::{self, FieldError, field};
use crate::{Jobs, JobsError, Result};

/// How long to wait before each new attempt after a failed one; then it is given up on.
const BACKOFF: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
    Duration::from_secs(14400),
];

/// The event a channel's test sends.
const TEST: &str = "test";

/// A channel's setting that cannot be used, as the field error it is.
fn unusable(e: NotifyError) -> JobsError {
    match e {
        NotifyError::Invalid { field, message } => FieldError { field, message }.into(),
        other => JobsError::Unusable(other.to_string()),
    }
}

/// The events chosen: known ones, at least one.
fn events(chosen: Vec<String>) -> Result<Vec<String>> {
    if let Some(unknown) = chosen.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(field(
            "events",
            format!(
                "{unknown:?} is not an event; they are: {}",
                EVENTS.join(", ")
            ),
        )
        .into());
    }
    if chosen.is_empty() {
        return Err(field("events", "choose the events to be told of").into());
    }
    Ok(chosen)
}

fn sealed(secret: &Secret) -> String {
    serde_json::to_string(secret).expect("a secret serializes")
}

impl Managed for NotificationChannel {
    async fn make(_: &Jobs, id: String, input: ChannelInput) -> Result<(Self, Option<String>)> {
        let secret = Secret {
            url: input.url,
            secret: input.secret,
            token: input.token,
            password: input.password,
        };
        let target =
            coffer_notify::check(input.kind, &secret, input.email.as_ref()).map_err(unusable)?;
        let now = Utc::now();
        let channel = NotificationChannel {
            id,
            name: spec::name(&input.name)?,
            kind: input.kind,
            events: events(input.events)?,
            enabled: input.enabled.unwrap_or(true),
            target,
            email: input.email,
            created_at: now,
            updated_at: now,
        };
        Ok((channel, Some(sealed(&secret))))
    }

    async fn change(jobs: &Jobs, mut c: Self, u: ChannelUpdate) -> Result<(Self, Option<String>)> {
        if let Some(name) = u.name {
            c.name = spec::name(&name)?;
        }
        if let Some(e) = u.events {
            c.events = events(e)?;
        }
        if let Some(enabled) = u.enabled {
            c.enabled = enabled;
        }
        if u.email.is_some() {
            c.email = u.email;
        }
        // The secret parts given replace their own; the others stay.
        let given = [&u.url, &u.secret, &u.token, &u.password]
            .iter()
            .any(|p| p.is_some());
        let mut secret = jobs.channel_secret(&c.id).await?;
        for (part, new) in [
            (&mut secret.url, u.url),
            (&mut secret.secret, u.secret),
            (&mut secret.token, u.token),
            (&mut secret.password, u.password),
        ] {
            if let Some(new) = new {
                *part = Some(new).filter(|p| !p.is_empty());
            }
        }
        c.target = coffer_notify::check(c.kind, &secret, c.email.as_ref()).map_err(unusable)?;
        Ok((c, given.then(|| sealed(&secret))))
    }

    /// Send it a test message now (kept in the notifications like any other).
    async fn test(jobs: &Jobs, c: Self) -> Result<Check> {
        let title = format!("Coffer: a test of the channel {}", c.name);
        let text = format!(
            "This is a test message from Coffer at {}: the channel {} works.",
            jobs.public_url, c.name
        );
        let payload = serde_json::json!({
            "event": TEST, "title": title, "text": text, "at": Utc::now(),
        })
        .to_string();
        let new = NewNotification {
            channel: c,
            event: TEST.into(),
            job_id: None,
            title,
            text,
            payload: payload.clone(),
        };
        let notification = jobs.db.add_notification(&new).await?;
        let done = jobs
            .deliver(
                DueNotification {
                    notification,
                    payload,
                },
                false,
            )
            .await?;
        let last = done.attempts.last().cloned();
        Ok(Check {
            ok: last.as_ref().is_some_and(|a| a.ok),
            detail: last.map(|a| a.detail).unwrap_or_default(),
        })
    }
}

impl Jobs {
    /// Channel `id`'s secret parts, opened.
    async fn channel_secret(&self, id: &str) -> Result<Secret> {
        match self.secret::<NotificationChannel>(id).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| JobsError::Internal(format!("a channel's sealed settings: {e}"))),
            None => Ok(Secret::default()),
        }
    }

    /// The notifications, newest first, at most `limit`.
    pub async fn notifications(&self, limit: u32) -> Result<Vec<Notification>> {
        Ok(self.db.notifications(limit).await?)
    }

    /// Tell the channels what happens until `shutdown`: a notification for each event a
    /// channel chose, delivered (and tried again) by [`Jobs::deliverer`].
    pub async fn notifier(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut events = self.subscribe();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = events.recv() => match event {
                    Ok(event) => {
                        if let Err(e) = self.notify(&event).await {
                            tracing::warn!(event = %event.event, error = %e, "cannot queue notifications");
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events came faster than notifications were queued");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }

    /// Deliver the notifications that are due, and again as each next one falls due, until
    /// `shutdown`.
    pub async fn deliverer(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = match self.deliver_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "delivering notifications failed");
                    None
                }
            };
            if !crate::pause(next, &self.deliveries, shutdown.as_mut()).await {
                break;
            }
        }
    }

    /// Queue a notification of `event` for each enabled channel that chose it.
    async fn notify(&self, event: &Event) -> Result<()> {
        if !EVENTS.contains(&event.event.as_str()) {
            return Ok(());
        }
        let channels: Vec<NotificationChannel> = self
            .db
            .resources::<NotificationChannel>()
            .await?
            .into_iter()
            .filter(|c| c.enabled && c.events.contains(&event.event))
            .collect();
        if channels.is_empty() {
            return Ok(());
        }
        let job = match event.job_id.as_str() {
            "" => None,
            id => self.db.job(id).await.ok(),
        };
        let told = Told::of(
            event,
            job.as_ref().map(|j| j.name.as_str()),
            &self.public_url,
        );
        for channel in channels {
            let new = NewNotification {
                channel,
                event: event.event.clone(),
                job_id: job.as_ref().map(|j| j.id.clone()),
                title: told.title.clone(),
                text: told.text.clone(),
                payload: told.payload.clone(),
            };
            self.db.add_notification(&new).await?;
        }
        self.deliveries.notify_one();
        Ok(())
    }

    /// Deliver every notification due now; when the next one falls due.
    async fn deliver_due(&self) -> Result<Option<chrono::DateTime<Utc>>> {
        loop {
            let (due, next) = self.db.due_notifications(Utc::now()).await?;
            if due.is_empty() {
                return Ok(next);
            }
            for d in due {
                self.deliver(d, true).await?;
            }
        }
    }

    /// One attempt at delivering `due`; after a failure, another later when `retry` and the
    /// attempts are not used up, else it is given up on.
    async fn deliver(&self, due: DueNotification, retry: bool) -> Result<Notification> {
        let n = &due.notification;
        let channel = self
            .db
            .resource::<NotificationChannel>(&n.channel_id)
            .await?;
        let link = serde_json::from_str::<serde_json::Value>(&due.payload)
            .ok()
            .and_then(|p| p["link"].as_str().map(str::to_string));
        let message = Message {
            title: &n.title,
            text: &n.text,
            link: link.as_deref(),
            failure: !matches!(
                n.event.as_str(),
                "backup.completed"
                    | "drill.completed"
                    | "restore.completed"
                    | "job.recovered"
                    | TEST
            ),
            payload: &due.payload,
        };
        let sent = match channel.enabled || n.event == TEST {
            true => {
                let secret = self.channel_secret(&channel.id).await?;
                coffer_notify::send(channel.kind, &secret, channel.email.as_ref(), &message)
                    .await
                    .map_err(|e| e.to_string())
            }
            false => Err("the channel was turned off".to_string()),
        };
        let attempt = DeliveryAttempt {
            at: Utc::now(),
            ok: sent.is_ok(),
            detail: sent.unwrap_or_else(|e| e),
        };
        let retry_at = BACKOFF
            .get(n.attempts.len())
            .filter(|_| retry && !attempt.ok && channel.enabled)
            .map(|wait| attempt.at + *wait);
        match (&attempt.ok, retry_at) {
            (true, _) => {
                tracing::info!(channel = %channel.name, event = %n.event, "notification delivered")
            }
            (false, Some(at)) => {
                tracing::warn!(channel = %channel.name, event = %n.event, error = %attempt.detail, %at, "notification not delivered; trying again later")
            }
            (false, None) => {
                tracing::warn!(channel = %channel.name, event = %n.event, error = %attempt.detail, "notification not delivered; given up")
            }
        }
        Ok(self.db.attempted(&n.id, &attempt, retry_at).await?)
    }

    /// Tell the channels that a system backup failed (`error`: why).
    pub fn system_backup_failed(&self, error: &str) {
        self.emit("system.backup_failed", "", "", None, Some(error));
    }
}

/// What a notification of an event says: a line, words with a link, and the JSON body a
/// webhook receives.
struct Told {
    title: String,
    text: String,
    payload: String,
}

impl Told {
    fn of(event: &Event, job: Option<&str>, public_url: &str) -> Told {
        let job_name = job.unwrap_or("(a job since deleted)");
        let title = match event.event.as_str() {
            "backup.failed" => format!("Backup of {job_name} failed"),
            "backup.completed" => format!("Backup of {job_name} completed"),
            "verify.failed" => format!("A backup of {job_name} failed its verification"),
            "drill.failed" => format!("Restore drill of {job_name} failed"),
            "drill.completed" => {
                format!("Restore drill of {job_name} passed: its newest backup comes back")
            }
            "restore.completed" => format!("Restore of {job_name} completed"),
            "restore.failed" => format!("Restore of {job_name} failed"),
            "system.backup_failed" => "A backup of Coffer's own configuration failed".to_string(),
            "job.overdue" => format!("{job_name} is overdue"),
            "job.recovered" => format!("{job_name} is back on schedule: a backup succeeded"),
            "backup.suspicious" => format!("A backup of {job_name} looks wrong"),
            "pitr.lagging" => "A binary log archive is behind its server".to_string(),
            "pitr.gap" => "A binary log archive has a new gap".to_string(),
            other => format!("{other} ({job_name})"),
        };
        let link = match event.job_id.as_str() {
            "" if event.event.starts_with("pitr.") => format!("{public_url}/#/credentials"),
            "" => format!("{public_url}/#/system"),
            id => format!("{public_url}/#/jobs/{id}"),
        };
        let mut text = title.clone();
        match &event.error {
            Some(e) => text.push_str(&format!(":\n{e}")),
            None => text.push('.'),
        }
        text.push_str(&format!("\n\n{link}"));
        let payload = serde_json::json!({
            "event": event.event,
            "title": title,
            "text": text,
            "job_id": (!event.job_id.is_empty()).then_some(&event.job_id),
            "job_name": job,
            "record_id": (!event.record_id.is_empty()).then_some(&event.record_id),
            "restore_id": event.restore_id,
            "error": event.error,
            "link": link,
            "at": event.at,
        })
        .to_string();
        Told {
            title,
            text,
            payload,
        }
    }
}
