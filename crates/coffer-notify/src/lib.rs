//! Notification channels: what a message looks like on each kind of receiver, and getting it
//! there. One module per kind ([`ChannelKind`]), each checking the settings it needs and
//! sending one message; [`check`] and [`send`] are the one place that tells the kinds apart: a
//! new kind is a new module and a line in each.
//!
//! The secret parts of a channel ([`Secret`]: its URL, which often carries a token, a signing
//! secret, a token, a password) reach this crate in clear only to be used; they are never
//! logged (the `Debug` of [`Secret`] hides them) nor put into an error.

use std::sync::OnceLock;
use std::time::Duration;

use coffer_types::{ChannelKind, EmailSettings};
use serde::{Deserialize, Serialize};

mod discord;
mod email;
mod gotify;
mod ntfy;
mod slack;
mod webhook;

pub use webhook::sign;

/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a channel is not usable as given, or a message did not get through.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A setting is missing or wrong: the field, and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The receiver answered with an error.
    #[error("the receiver answered {status}: {body}")]
    Refused { status: u16, body: String },
    /// The receiver could not be reached, or did not answer in time.
    #[error("the receiver cannot be reached: {0}")]
    Unreachable(String),
    /// The mail server refused the message, or could not be reached.
    #[error("the mail server: {0}")]
    Mail(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        field,
        message: message.into(),
    }
}

/// The secret parts of a channel, kept sealed at rest.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What to tell: a line, the words (ending with a link to it in the UI), and the JSON body a
/// webhook receives.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub link: Option<&'a str>,
    /// Something went wrong (receivers that can show it louder do).
    pub failure: bool,
    pub payload: &'a str,
}

/// A channel of `kind` with `secret` and `email` settings as given: where it delivers, without
/// secrets (shown to users), or what is missing or wrong.
pub fn check(
    kind: ChannelKind,
    secret: &Secret,
    email: Option<&EmailSettings>,
) -> Result<String, NotifyError> {
    match kind {
        ChannelKind::Webhook => webhook::check(secret),
        ChannelKind::Discord | ChannelKind::Slack => host_of(secret),
        ChannelKind::Ntfy => ntfy::check(secret),
        ChannelKind::Gotify => gotify::check(secret),
        ChannelKind::Email => email::check(email, secret),
    }
}

/// Send `message` through a channel of `kind`: what the receiver said.
pub async fn send(
    kind: ChannelKind,
    secret: &Secret,
    email: Option<&EmailSettings>,
    message: &Message<'_>,
) -> Result<String, NotifyError> {
    check(kind, secret, email)?;
    match kind {
        ChannelKind::Webhook => webhook::send(secret, message).await,
        ChannelKind::Discord => discord::send(secret, message).await,
        ChannelKind::Slack => slack::send(secret, message).await,
        ChannelKind::Ntfy => ntfy::send(secret, message).await,
        ChannelKind::Gotify => gotify::send(secret, message).await,
        ChannelKind::Email => email::send(email.expect("checked"), secret, message).await,
    }
}

/// The one HTTP client: no redirects (a receiver's answer is its own), a timeout.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds")
    })
}

/// The channel's URL: http or https, with a host.
fn url(secret: &Secret) -> Result<reqwest::Url, NotifyError> {
    let given = secret
        .url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| invalid("url", "give the URL to send to"))?;
    let url =
        reqwest::Url::parse(given.trim()).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("url", "an http:// or https:// URL with a host"));
    }
    Ok(url)
}

/// Where a channel of one URL delivers, shown without its path (which may hold a token).
fn host_of(secret: &Secret) -> Result<String, NotifyError> {
    let url = url(secret)?;
    let host = url.host_str().unwrap_or_default();
    Ok(match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// What a receiver answered: its status when it took the message, else the error.
async fn answered(sent: reqwest::Result<reqwest::Response>) -> Result<String, NotifyError> {
    let response = sent.map_err(|e| NotifyError::Unreachable(without_url(e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("the receiver answered {}", status.as_u16()));
    }
    let body = response.text().await.unwrap_or_default();
    Err(NotifyError::Refused {
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}

/// A request's error without its URL (which may hold a token).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut words = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        words.push_str(&format!(": {s}"));
        source = s.source();
    }
    words
}

/// The host (and port, when given) a ping URL goes to: what an admin allows.
pub fn ping_host(url: &str) -> Result<String, NotifyError> {
    let secret = Secret {
        url: Some(url.to_string()),
        ..Secret::default()
    };
    let url = self::url(&secret).map_err(|e| match e {
        NotifyError::Invalid { message, .. } => invalid("ping_url", message),
        other => other,
    })?;
    let host = url.host_str().unwrap_or_default();
    Ok(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Ping `url` (healthchecks-style): the URL itself after a success, with `/fail` after a
/// failure; what it answered.
pub async fn ping(url: &str, failed: bool) -> Result<String, NotifyError> {
    let secret = Secret {
        url: Some(url.to_string()),
        ..Secret::default()
    };
    let mut url = self::url(&secret)?;
    if failed {
        url.path_segments_mut()
            .map_err(|()| invalid("ping_url", "not a URL to ping"))?
            .pop_if_empty()
            .push("fail");
    }
    answered(client().post(url).send().await).await
}
