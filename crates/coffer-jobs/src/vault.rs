//! Secrets at rest (S3 secret keys of repositories, later database passwords), sealed with
//! AES-256-GCM under the server key: 32 random bytes in `<data_dir>/server.key` (mode 0600),
//! kept apart from the metadata database so that a copy of the database alone reveals nothing.
//! Each secret is bound to what it belongs to (its context), so sealed values cannot be
//! swapped between rows.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const KEY_FILE: &str = "server.key";

/// A sealed secret that this server's key does not open (the key file was replaced, or the
/// value does not belong to `context`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the stored secret of {context} cannot be decrypted with this server's key ({KEY_FILE}): enter it again"
)]
pub struct Unsealable {
    context: String,
}

pub struct Vault {
    key: LessSafeKey,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key>)")
    }
}

impl Vault {
    /// The server key in `data_dir`, created (write, fsync, rename) on first use.
    pub fn open_or_create(data_dir: &Path) -> std::io::Result<Vault> {
        let path = data_dir.join(KEY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = data_dir.join(format!(".{KEY_FILE}.tmp"));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&crate::random_key())?;
                f.sync_all()?;
                // Two servers racing: the first link wins, and both read what it left.
                if std::fs::hard_link(&tmp, &path).is_ok() {
                    std::fs::File::open(data_dir)?.sync_all()?;
                }
                let _ = std::fs::remove_file(&tmp);
                std::fs::read(&path)?
            }
            Err(e) => return Err(e),
        };
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte key", path.display()),
            )
        })?;
        Ok(Vault {
            key: LessSafeKey::new(key),
        })
    }

    /// Nonce, then ciphertext and tag.
    pub fn seal(&self, secret: &str, context: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&crate::random_key()[..NONCE_LEN]);
        let mut buf = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("sealing cannot fail for small inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<String, Unsealable> {
        let bad = || Unsealable {
            context: context.to_string(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?,
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open_or_create(dir.path()).unwrap();
        let sealed = v.seal("s3cr3t", "repository:a");
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(v.open(&sealed, "repository:a").unwrap(), "s3cr3t");
        assert!(v.open(&sealed, "repository:b").is_err());
        // The same key on the next start; another data directory has another key.
        let again = Vault::open_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed, "repository:a").unwrap(), "s3cr3t");
        let other = tempfile::tempdir().unwrap();
        assert!(
            Vault::open_or_create(other.path())
                .unwrap()
                .open(&sealed, "repository:a")
                .is_err()
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}
