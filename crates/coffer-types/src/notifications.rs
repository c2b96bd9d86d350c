//! Notification channels, and the notifications sent through them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The events a channel can be told of.
pub const EVENTS: &[&str] = &[
    "backup.failed",
    "backup.completed",
    "verify.failed",
    "drill.failed",
    "drill.completed",
    "restore.completed",
    "restore.failed",
    "system.backup_failed",
    "job.overdue",
    "job.recovered",
    "backup.suspicious",
    "pitr.lagging",
    "pitr.gap",
];

/// Where a channel delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A JSON body POSTed to `url`, signed in `X-Coffer-Signature` (`sha256=` and the hex
    /// HMAC-SHA256 of the body with the channel's `secret`).
    Webhook,
    /// A Discord webhook `url`.
    Discord,
    /// A Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming webhook `url`.
    Slack,
    /// An ntfy topic `url` (`https://ntfy.sh/<topic>`), with an access `token` if it needs one.
    Ntfy,
    /// A Gotify server `url` and an application `token`.
    Gotify,
    /// E-mail through an SMTP server (`email`), its login's `password`.
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Discord => "discord",
            ChannelKind::Slack => "slack",
            ChannelKind::Ntfy => "ntfy",
            ChannelKind::Gotify => "gotify",
            ChannelKind::Email => "email",
        }
    }
}

/// How an e-mail channel reaches its SMTP server, and whom it writes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub host: String,
    /// Default: 587 with STARTTLS, 465 with TLS, 25 without.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (the default), `tls` (SMTPS), or `none` (only to a relay on this machine).
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// A notification channel as the API shows it: never its URL's token, secret or password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationChannel {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// The events it is told of (see `GET /api/notification-channels`' documentation).
    pub events: Vec<String>,
    pub enabled: bool,
    /// Where it delivers, without secrets: the host of its URL, or the SMTP server and the
    /// recipients.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSettings>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

crate::resource!(
    NotificationChannel,
    ChannelInput,
    ChannelUpdate,
    "notification channel",
    "notification-channels"
);

/// A channel to create: `POST /api/notification-channels`. What each type needs: `url` (all
/// but `email`), `secret` (`webhook`: what its signature is made with), `token` (`gotify`;
/// `ntfy` if its topic needs one), `email` and, if the server wants a login, `password`
/// (`email`). The URL, the secret, the token and the password are kept sealed and never shown
/// again.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    pub events: Vec<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub email: Option<EmailSettings>,
    #[serde(default)]
    pub password: Option<String>,
}

/// A change to a channel: `PUT /api/notification-channels/{id}`. Its type stays; the fields
/// given replace its own. The secret parts (`url`, `secret`, `token`, `password`) are replaced
/// together when any of them is given.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Where a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: it is tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up on after its last attempt.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One attempt at delivering a notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// What the receiver answered, or why it could not be reached.
    pub detail: String,
}

/// A notification: what happened, told to one channel, and every attempt at delivering it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: String,
    pub channel_id: String,
    pub channel_name: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What happened, in a line.
    pub title: String,
    /// What happened, in words, with a link to it in the UI.
    pub text: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}
