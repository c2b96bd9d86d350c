//! System backups: the whole metadata database as one `.zip` (the format is documented in
//! docs/system-backup.md).
//!
//! - `manifest.json`: format and versions, when and where it was made, row counts per table,
//!   whether secrets are included, the fingerprint of the server key the database's sealed
//!   values belong to, and the SHA-256 of every other file.
//! - `db/<table>.json`: every row of every table (`coffer_db::Tables`), but the tables that
//!   hold secrets in clear (`server_secrets`: the token signing key) or that are only valid on
//!   one running server (`sessions`).
//! - `secrets/keys.enc`, only when asked for: the server key and the secret tables, sealed with
//!   a passphrase the caller gives (argon2id, then AES-256-GCM). Nothing secret is ever in the
//!   clear.
//!
//! Reading checks everything before anything is used: entry names, that every file the
//! manifest lists is there with its checksum and nothing else is, the format, the schema (a
//! newer one is refused), and the shape of every table.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use chrono::{DateTime, Utc};
use coffer_db::{Row, Tables};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "coffer-system-backup";
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SECRETS: &str = "secrets/keys.enc";
const CONFIG: &str = "config/";
/// Tables never written in the clear.
pub const SECRET_TABLES: [&str; 2] = ["server_secrets", "sessions"];
const MAGIC: &[u8; 8] = b"CFSYSK01";
const KDF: (u32, u32, u32) = (64 * 1024, 3, 1);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a system backup, or a damaged or tampered one; nothing was used.
    #[error("not a usable Coffer system backup: {0}")]
    Invalid(String),
    #[error("the passphrase does not open this system backup's secrets")]
    WrongPassphrase,
    #[error("writing the system backup: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(m: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Invalid(m.to_string())
}

impl From<zip::result::ZipError> for ArchiveError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(io) => ArchiveError::Io(io),
            other => invalid(other),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub coffer_version: String,
    pub schema_version: i64,
    pub created_at: DateTime<Utc>,
    pub host: String,
    /// Rows per table.
    pub tables: BTreeMap<String, usize>,
    pub secrets_included: bool,
    /// SHA-256 (hex, first 16 bytes) of the server key the database's sealed values belong
    /// to; not a secret.
    pub server_key_id: String,
    /// SHA-256 (hex) of every other file, by name.
    pub files: BTreeMap<String, String>,
}

/// The secrets a system backup may carry, sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    /// `server.key`, hex.
    pub server_key: String,
    /// The rows of [`SECRET_TABLES`].
    pub tables: BTreeMap<String, Vec<Row>>,
}

/// The fingerprint of a server key, as manifests record it.
pub fn key_id(server_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(server_key)[..16])
}

/// What a system backup says about itself, besides its tables.
pub struct About<'a> {
    pub coffer_version: &'a str,
    pub host: &'a str,
    pub server_key: &'a [u8],
    /// The configuration file the server runs with: its name and content.
    pub config: Option<(String, Vec<u8>)>,
}

/// Write `tables` as a system backup into `out`; with `passphrase`, the server key and the
/// secret tables sealed under it.
pub fn write(
    out: impl Write + Seek,
    tables: &Tables,
    about: &About<'_>,
    passphrase: Option<&str>,
) -> Result<Manifest, ArchiveError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut secret_tables = BTreeMap::new();
    for (table, rows) in &tables.rows {
        if SECRET_TABLES.contains(&table.as_str()) {
            secret_tables.insert(table.clone(), rows.clone());
            continue;
        }
        let json = serde_json::to_vec_pretty(rows).expect("rows serialize");
        files.insert(format!("db/{table}.json"), json);
    }
    if let Some((name, bytes)) = &about.config {
        files.insert(format!("{CONFIG}{name}"), bytes.clone());
    }
    if let Some(passphrase) = passphrase {
        let secrets = Secrets {
            server_key: hex::encode(about.server_key),
            tables: secret_tables,
        };
        let clear = serde_json::to_vec(&secrets).expect("secrets serialize");
        files.insert(SECRETS.into(), seal(&clear, passphrase));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        coffer_version: about.coffer_version.into(),
        schema_version: tables.schema,
        created_at: Utc::now(),
        host: about.host.into(),
        tables: tables
            .rows
            .iter()
            .map(|(t, r)| (t.clone(), r.len()))
            .collect(),
        secrets_included: passphrase.is_some(),
        server_key_id: key_id(about.server_key),
        files: files
            .iter()
            .map(|(n, b)| (n.clone(), hex::encode(Sha256::digest(b))))
            .collect(),
    };
    let mut zip = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    zip.start_file(MANIFEST, opts)?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest).expect("the manifest serializes"))?;
    for (name, bytes) in &files {
        zip.start_file(name.as_str(), opts)?;
        zip.write_all(bytes)?;
    }
    zip.finish()?.flush()?;
    Ok(manifest)
}

/// A system backup, read and checked.
#[derive(Debug)]
pub struct Opened {
    pub manifest: Manifest,
    /// The tables in the clear (not [`SECRET_TABLES`]).
    pub tables: Tables,
    /// The configuration file the server ran with: its name and content.
    pub config: Option<(String, Vec<u8>)>,
    sealed: Option<Vec<u8>>,
}

impl Opened {
    /// The secrets, opened with `passphrase`; `None` when the backup has none.
    pub fn secrets(&self, passphrase: &str) -> Result<Option<Secrets>, ArchiveError> {
        let Some(sealed) = &self.sealed else {
            return Ok(None);
        };
        let clear = open(sealed, passphrase)?;
        serde_json::from_slice(&clear)
            .map(Some)
            .map_err(|e| invalid(format!("its secrets: {e}")))
    }
}

/// Read a system backup and check all of it: nothing is returned from a damaged, tampered,
/// foreign or newer one.
pub fn read(input: impl Read + Seek, newest_schema: i64) -> Result<Opened, ArchiveError> {
    let mut zip =
        zip::ZipArchive::new(input).map_err(|e| invalid(format!("not a zip file ({e})")))?;
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry
            .name()
            .map_err(|e| invalid(format!("an entry's name: {e}")))?
            .to_string();
        let plain = entry
            .enclosed_name()
            .is_some_and(|p| p.to_str() == Some(name.as_str()));
        if !plain || name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(invalid(format!(
                "the entry {name:?} is not a plain relative name"
            )));
        }
        if entry.is_dir() {
            continue;
        }
        let mut bytes = vec![];
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("{name}: {e}")))?;
        if contents.insert(name.clone(), bytes).is_some() {
            return Err(invalid(format!("{name} is in it twice")));
        }
    }
    let manifest: Manifest = serde_json::from_slice(
        &contents
            .remove(MANIFEST)
            .ok_or_else(|| invalid("it has no manifest.json"))?,
    )
    .map_err(|e| invalid(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "its format is {:?} version {}",
            manifest.format, manifest.format_version
        )));
    }
    if manifest.schema_version > newest_schema {
        return Err(invalid(format!(
            "it was made by a newer Coffer (schema {}; this one knows {newest_schema}): upgrade Coffer",
            manifest.schema_version
        )));
    }
    let listed: Vec<&String> = manifest.files.keys().collect();
    let present: Vec<&String> = contents.keys().collect();
    if listed != present {
        return Err(invalid(format!(
            "its files ({present:?}) are not those its manifest lists ({listed:?})"
        )));
    }
    for (name, sum) in &manifest.files {
        if hex::encode(Sha256::digest(&contents[name])) != *sum {
            return Err(invalid(format!("{name} does not match its checksum")));
        }
    }
    let sealed = contents.remove(SECRETS);
    if sealed.is_some() != manifest.secrets_included {
        return Err(invalid("its manifest and its secrets disagree"));
    }
    let config_names: Vec<String> = contents
        .keys()
        .filter(|n| n.starts_with(CONFIG))
        .cloned()
        .collect();
    if config_names.len() > 1 || config_names.iter().any(|n| n[CONFIG.len()..].contains('/')) {
        return Err(invalid(
            "it holds more than one configuration file, or one in a folder",
        ));
    }
    let config = config_names.first().map(|n| {
        let bytes = contents.remove(n).expect("listed");
        (n[CONFIG.len()..].to_string(), bytes)
    });
    let mut rows = BTreeMap::new();
    for (name, bytes) in contents {
        let table = name
            .strip_prefix("db/")
            .and_then(|n| n.strip_suffix(".json"))
            .ok_or_else(|| invalid(format!("{name} is not a table")))?;
        let parsed: Vec<Row> =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{name}: {e}")))?;
        if manifest.tables.get(table) != Some(&parsed.len()) {
            return Err(invalid(format!(
                "{name} does not hold the rows its manifest counts"
            )));
        }
        rows.insert(table.to_string(), parsed);
    }
    Ok(Opened {
        tables: Tables {
            schema: manifest.schema_version,
            rows,
        },
        manifest,
        config,
        sealed,
    })
}

fn key_from(
    passphrase: &str,
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<LessSafeKey, ArchiveError> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(invalid)?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(invalid)?;
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"),
    ))
}

/// `MAGIC`, argon2id m/t/p (u32 LE each), salt (16), nonce (12), ciphertext and tag; the
/// header is authenticated.
fn seal(clear: &[u8], passphrase: &str) -> Vec<u8> {
    let mut random = [0u8; 16 + NONCE_LEN];
    getrandom::fill(&mut random).expect("the system's random numbers");
    let (salt, nonce) = random.split_at(16);
    let mut out = MAGIC.to_vec();
    for v in [KDF.0, KDF.1, KDF.2] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    let key = key_from(passphrase, salt, KDF).expect("valid parameters");
    let mut buf = clear.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).expect("a nonce's length");
    key.seal_in_place_append_tag(nonce, Aad::from(out.as_slice()), &mut buf)
        .expect("sealing");
    out.extend_from_slice(&buf);
    out
}

fn open(sealed: &[u8], passphrase: &str) -> Result<Vec<u8>, ArchiveError> {
    let head = 8 + 12 + 16 + NONCE_LEN;
    if sealed.len() < head || &sealed[..8] != MAGIC {
        return Err(invalid("its secrets are not sealed as Coffer seals them"));
    }
    let u = |i: usize| u32::from_le_bytes(sealed[i..i + 4].try_into().expect("4 bytes"));
    let params = (u(8), u(12), u(16));
    if params.0 > 4 * 1024 * 1024 || params.1 > 64 || params.2 > 64 {
        return Err(invalid(
            "its secrets ask for an unreasonable key derivation",
        ));
    }
    let (salt, nonce) = (&sealed[20..36], &sealed[36..head]);
    let key = key_from(passphrase, salt, params)?;
    let mut buf = sealed[head..].to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(invalid)?;
    let clear = key
        .open_in_place(nonce, Aad::from(&sealed[..head]), &mut buf)
        .map_err(|_| ArchiveError::WrongPassphrase)?;
    Ok(clear.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        let row = |v: serde_json::Value| v.as_object().unwrap().clone();
        Tables {
            schema: 9,
            rows: BTreeMap::from([
                (
                    "users".to_string(),
                    vec![row(serde_json::json!({"id": "u1", "username": "admin"}))],
                ),
                (
                    "server_secrets".to_string(),
                    vec![row(
                        serde_json::json!({"name": "jwt", "value": {"hex": "c0ffee"}}),
                    )],
                ),
                ("sessions".to_string(), vec![]),
            ]),
        }
    }

    const ABOUT: About<'static> = About {
        coffer_version: "test",
        host: "here",
        server_key: &[7u8; 32],
        config: None,
    };

    fn written(passphrase: Option<&str>) -> Vec<u8> {
        let mut out = std::io::Cursor::new(vec![]);
        write(&mut out, &tables(), &ABOUT, passphrase).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_system_backup_reads_back_and_keeps_its_secrets_sealed() {
        let zip = written(Some("a long passphrase"));
        let opened = read(std::io::Cursor::new(&zip), 9).unwrap();
        assert_eq!(opened.tables.rows.keys().collect::<Vec<_>>(), ["users"]);
        assert_eq!(opened.manifest.server_key_id, key_id(&[7u8; 32]));
        assert!(matches!(
            opened.secrets("wrong"),
            Err(ArchiveError::WrongPassphrase)
        ));
        let secrets = opened.secrets("a long passphrase").unwrap().unwrap();
        assert_eq!(secrets.server_key, hex::encode([7u8; 32]));
        assert_eq!(secrets.tables["server_secrets"].len(), 1);
        // Nothing secret in the clear anywhere in the file.
        let text = String::from_utf8_lossy(&zip).to_string();
        assert!(!text.contains("c0ffee") && !text.contains(&hex::encode([7u8; 32])));
        let plain = read(std::io::Cursor::new(written(None)), 9).unwrap();
        assert!(plain.secrets("anything").unwrap().is_none());
    }

    #[test]
    fn damaged_foreign_and_newer_backups_are_refused() {
        let zip = written(None);
        assert!(read(std::io::Cursor::new(&zip), 8).is_err(), "newer schema");
        assert!(
            read(std::io::Cursor::new(&zip[..zip.len() / 2]), 9).is_err(),
            "truncated"
        );
        assert!(read(std::io::Cursor::new(b"not a zip".to_vec()), 9).is_err());
        // A table changed after the manifest was written.
        let mut out = std::io::Cursor::new(vec![]);
        {
            let opened = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
            let mut w = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default();
            let mut opened = opened;
            for i in 0..opened.len() {
                let mut e = opened.by_index(i).unwrap();
                let mut bytes = vec![];
                e.read_to_end(&mut bytes).unwrap();
                let name = e.name().unwrap().to_string();
                w.start_file(name.as_str(), opts).unwrap();
                if name == "db/users.json" {
                    bytes = b"[]".to_vec();
                }
                w.write_all(&bytes).unwrap();
            }
            w.start_file("../escape", opts).unwrap();
            w.finish().unwrap();
        }
        let err = read(std::io::Cursor::new(out.into_inner()), 9).unwrap_err();
        assert!(matches!(err, ArchiveError::Invalid(_)), "{err}");
    }
}
