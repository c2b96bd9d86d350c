//! The types of Coffer's HTTP API: what the server accepts and returns, shared with the client
//! and the tests. This is the only crate where API shapes are defined.
//!
//! Inputs are parsed, not validated later: a `Username` or a `NewPassword` that exists is valid,
//! so a request that deserializes is a request the server can act on.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A resource admins manage at `/api/<PATH>` (list, create, get, update, delete, test) whose
/// secret is stored sealed and never returned: registered repositories, database credentials.
pub trait Resource: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What creates one.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What changes one: the fields given.
    type Update: Serialize + DeserializeOwned + Send + 'static;
    /// Its name in messages, and what its secret is bound to: `repository`.
    const KIND: &'static str;
    /// Its collection under `/api/`: `repositories`.
    const PATH: &'static str;

    fn id(&self) -> &str;
    fn name(&self) -> &str;
}

/// `Resource` for an API type with `id` and `name` fields.
macro_rules! resource {
    ($ty:ty, $input:ty, $update:ty, $kind:literal, $path:literal) => {
        impl $crate::Resource for $ty {
            type Input = $input;
            type Update = $update;
            const KIND: &'static str = $kind;
            const PATH: &'static str = $path;

            fn id(&self) -> &str {
                &self.id
            }

            fn name(&self) -> &str {
                &self.name
            }
        }
    };
}
pub(crate) use resource;

mod credentials;
mod drills;
mod jobs;
mod notifications;
mod pitr;
mod repositories;
mod system;

pub use credentials::{Credential, CredentialInput, CredentialUpdate, DbEngine, TlsMode};
pub use drills::{Drill, DrillCheck};
pub use jobs::{
    BinlogPosition, DatabaseDump, Event, Job, JobInput, JobUpdate, MysqlTool, Progress, Record,
    RecordStatus, RecordTree, RestoreRequest, RestoreTask, Retention, SchedulePreview, Source,
    TreeEntry, VerifyResult,
};
pub use notifications::{
    ChannelInput, ChannelKind, ChannelUpdate, DeliveryAttempt, DeliveryStatus, EVENTS,
    EmailSettings, Notification, NotificationChannel, SmtpSecurity,
};
pub use pitr::{PitrBaseline, PitrCoverage, PitrRequest, PitrRun, PitrStatus};
pub use repositories::{Repository, RepositoryInput, RepositoryUpdate};
pub use system::{
    Done, Export, ImportItem, ImportReport, MetaBackup, MetaBackupName, MetaBackupTaken,
    MetaBackups, OffsiteCopy, RunServerTask, ServerTask, ServerTaskRun, ServerTasks,
    SettingsUpdate, SystemBackupRequest, SystemRestored,
};

/// What a user or an API key may do. Ordered: each role can do what the ones below it can.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access.
    Viewer,
    /// Create, change and run jobs; restore, download, verify.
    Operator,
    /// Everything, including users, keys, settings and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is none of a domain type's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("{0:?} is not a role (admin, operator or viewer)")]
    Role(String),
    #[error("{0:?} is not a status (running, success or failed)")]
    Status(String),
    #[error("{0:?} is not a status (running, completed or failed)")]
    PitrStatus(String),
    #[error("a username is 1 to 64 letters, digits, '.', '_' or '-'")]
    Username,
    #[error("the password is too short: use at least 12 characters")]
    PasswordTooShort,
    #[error("the password is too long: use at most 1024 characters")]
    PasswordTooLong,
}

impl FromStr for Role {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(BadValue::Role(other.to_string())),
        }
    }
}

/// A user name: 1 to 64 letters, digits, `.`, `_` or `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl TryFrom<String> for Username {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        let ok = (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Username(s))
        } else {
            Err(BadValue::Username)
        }
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password being set: at least 12 characters. Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NewPassword(String);

impl TryFrom<String> for NewPassword {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        match s.chars().count() {
            n if n < 12 => Err(BadValue::PasswordTooShort),
            n if n > 1024 => Err(BadValue::PasswordTooLong),
            _ => Ok(NewPassword(s)),
        }
    }
}

impl From<NewPassword> for String {
    fn from(p: NewPassword) -> String {
        p.0
    }
}

impl NewPassword {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// Every error: a message for people and a stable code for programs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    /// For `invalid_field`: the field whose value cannot be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    /// No user exists yet: the first administrator is still to be created (`/api/auth/setup`).
    #[serde(default)]
    pub setup_required: bool,
}

/// The modules this server provides.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Modules {
    pub backups: bool,
}

/// First administrator.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    #[schema(value_type = String)]
    pub username: Username,
    #[schema(value_type = String, min_length = 12)]
    pub password: NewPassword,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A session: the token (also set as an HttpOnly cookie) and the user it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(value_type = String)]
    pub username: Username,
    #[schema(value_type = String, min_length = 12)]
    pub password: NewPassword,
    pub role: Role,
}

/// Replaces the fields given.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, min_length = 12)]
    pub password: Option<NewPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The owner.
    pub user_id: String,
    /// The first characters of the key, to recognize it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// At most the creator's role (the default).
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new key: the secret is shown this once and never again.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKey,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Setting {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingValue {
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    /// The operation, e.g. `POST /api/users`.
    pub action: String,
    /// The path requested, e.g. `/api/users/42`.
    pub target: String,
    pub status: u16,
    pub outcome: Outcome,
}

/// A check of something a node needs, with why it failed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    pub name: String,
    pub path: Option<String>,
    /// The first line the tool prints for `--version`.
    pub version: Option<String>,
}

/// A Docker volume on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DockerVolume {
    pub name: String,
    pub driver: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub version: String,
    pub docker: Check,
    pub tools: Vec<Tool>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    pub rotated: bool,
}

/// The key every encrypted job repository opens with, for safe keeping: `coffer
/// --password-file` with it opens the repositories, `coffer decrypt --key-file` the sealed
/// downloads.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RepositoryKey {
    pub key: String,
}

/// What a rotation of the repository key did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyRotation {
    /// The repositories that now open with the new key (those not made yet will be).
    pub repositories: u64,
    /// Repositories the old key still opens too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl fmt::Debug for RepositoryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RepositoryKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_rejects_bad_input() {
        assert!(Username::try_from("ok.name-1".to_string()).is_ok());
        for bad in ["", "has space", "slash/", &"x".repeat(65)] {
            assert!(Username::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
        assert!(NewPassword::try_from("short".to_string()).is_err());
        assert!(
            serde_json::from_str::<SetupRequest>(r#"{"username":"a","password":"short"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<CreateUser>(
                r#"{"username":"a","password":"long enough pw","role":"root"}"#
            )
            .is_err()
        );
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(
            format!(
                "{:?}",
                NewPassword::try_from("a very secret one".to_string()).unwrap()
            ),
            "NewPassword(<redacted>)"
        );
    }
}
