//! E-mail through an SMTP server: STARTTLS (the default) or TLS from the start, with the
//! login's password when it has one; without encryption only to a server on this machine
//! (a password must not cross a network in clear).

use std::time::Duration;

use coffer_types::{EmailSettings, SmtpSecurity};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::{Message, NotifyError, Secret, invalid};

/// The settings, and the sender and recipients as mailboxes.
fn parsed(
    email: Option<&EmailSettings>,
) -> Result<(&EmailSettings, Mailbox, Vec<Mailbox>), NotifyError> {
    let settings = email.ok_or_else(|| invalid("email", "give the SMTP server and addresses"))?;
    if settings.host.trim().is_empty() {
        return Err(invalid("email.host", "name the SMTP server"));
    }
    let loopback =
        matches!(settings.host.as_str(), "localhost" | "::1") || settings.host.starts_with("127.");
    if settings.security == SmtpSecurity::None && !loopback {
        return Err(invalid(
            "email.security",
            "without encryption only to a mail server on this machine (localhost): use starttls or tls",
        ));
    }
    let mailbox = |field: &'static str, a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| invalid(field, format!("{a:?} is not an e-mail address: {e}")))
    };
    let from = mailbox("email.from", &settings.from)?;
    if settings.to.is_empty() {
        return Err(invalid("email.to", "name at least one recipient"));
    }
    let to = settings
        .to
        .iter()
        .map(|a| mailbox("email.to", a))
        .collect::<Result<_, _>>()?;
    Ok((settings, from, to))
}

fn port(settings: &EmailSettings) -> u16 {
    settings.port.unwrap_or(match settings.security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    })
}

pub(crate) fn check(email: Option<&EmailSettings>, _: &Secret) -> Result<String, NotifyError> {
    let (settings, _, _) = parsed(email)?;
    Ok(format!(
        "{}:{} → {}",
        settings.host,
        port(settings),
        settings.to.join(", ")
    ))
}

pub(crate) async fn send(
    email: &EmailSettings,
    secret: &Secret,
    message: &Message<'_>,
) -> Result<String, NotifyError> {
    let (settings, from, to) = parsed(Some(email))?;
    let fail = |e: lettre::transport::smtp::Error| NotifyError::Mail(e.to_string());
    let builder = match settings.security {
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host).map_err(fail)?
        }
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(fail)?
        }
        SmtpSecurity::None => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        }
    };
    let mut builder = builder
        .port(port(settings))
        .timeout(Some(Duration::from_secs(20)));
    if let (Some(user), Some(password)) = (&settings.username, &secret.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let mut mail = lettre::Message::builder().from(from);
    for t in to {
        mail = mail.to(t);
    }
    let mail = mail
        .subject(message.title)
        .header(ContentType::TEXT_PLAIN)
        .body(message.text.to_string())
        .map_err(|e| NotifyError::Mail(e.to_string()))?;
    let response = builder.build().send(mail).await.map_err(fail)?;
    Ok(format!("the mail server took it ({})", response.code()))
}
