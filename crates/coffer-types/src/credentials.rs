//! Database credentials (`/api/credentials`, admin), which `postgres` and `mysql` sources name.
//! The password is write-only: stored sealed, never returned (`has_password` says whether one
//! is set).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which kind of server a credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    Postgres,
    Mysql,
}

impl DbEngine {
    pub fn as_str(&self) -> &'static str {
        match self {
            DbEngine::Postgres => "postgres",
            DbEngine::Mysql => "mysql",
        }
    }

    pub fn default_port(&self) -> u16 {
        match self {
            DbEngine::Postgres => 5432,
            DbEngine::Mysql => 3306,
        }
    }
}

/// How the connection uses TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it.
    #[default]
    Prefer,
    Require,
    /// TLS with the server's certificate and host name checked.
    VerifyFull,
}

impl TlsMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// A credential to store: `POST /api/credentials`. Give `host` (and `port`) or `socket`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: String,
    pub engine: DbEngine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Default: 5432 for PostgreSQL, 3306 for MySQL/MariaDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A Unix socket: its directory (PostgreSQL) or file (MySQL), instead of `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    pub user: String,
    /// Stored encrypted; never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// Archive the server's binary log for point-in-time recovery (MySQL/MariaDB only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<bool>,
    /// The registered repository the binary log is archived in (a repository of its own
    /// inside it, `pitr-<credential id>`); by default one under the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_repository_id: Option<String>,
}

/// A change to a credential: `PUT /api/credentials/{id}` replaces the fields given; an empty
/// `password` removes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// Start (`true`) or stop (`false`) archiving the binary log; what was archived is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<bool>,
    /// Archive in this registered repository from now on (empty: under the data directory).
    /// What the earlier place holds stays there, out of the coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_repository_id: Option<String>,
}

/// A stored credential as the API shows it: never its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub id: String,
    pub name: String,
    pub engine: DbEngine,
    pub host: Option<String>,
    pub port: u16,
    pub socket: Option<String>,
    pub user: String,
    pub has_password: bool,
    pub tls: TlsMode,
    /// Whether the server's binary log is archived for point-in-time recovery.
    #[serde(default)]
    pub pitr: bool,
    /// The registered repository the binary log is archived in (none: under the data
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_repository_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

crate::resource!(
    Credential,
    CredentialInput,
    CredentialUpdate,
    "credential",
    "credentials"
);
