//! The repository: config, key files, sealed objects, and opening with a password or key.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendResult, Metered, RequestStats};
use crate::cache::{self, Cache};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{self, IdHasher, KdfParams, Keys, MasterKey, SEED_LEN};
use crate::error::{Error, Result};
use crate::id::Id;

/// The repository format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) const CONFIG: &str = "config";
pub(crate) const KEYS: &str = "keys";
pub(crate) const DATA: &str = "data";
pub(crate) const INDEX: &str = "index";
pub(crate) const SNAPSHOTS: &str = "snapshots";
pub(crate) const LOCKS: &str = "locks";
pub(crate) const PLANS: &str = "prune";

pub(crate) fn pack_name(id: &Id) -> String {
    let h = id.to_hex();
    format!("{DATA}/{}/{h}", &h[..2])
}

pub(crate) fn object_name(dir: &str, id: &Id) -> String {
    format!("{dir}/{}", id.to_hex())
}

/// Every pack in the repository, with its size.
pub(crate) fn list_packs(repo: &Repository) -> Result<std::collections::HashMap<Id, u64>> {
    let listed = repo.backend().list(DATA)?;
    repo.forget_unlisted(DATA, listed.iter().map(|o| o.name.as_str()));
    Ok(listed
        .into_iter()
        .filter_map(|o| Some((id_of_name(&o.name)?, o.size)))
        .collect())
}

/// Parse the id at the end of an object name (`index/<hex>`, `data/ab/<hex>`).
pub(crate) fn id_of_name(name: &str) -> Option<Id> {
    name.rsplit('/').next()?.parse().ok()
}

/// Settings fixed at `init`. Stored as JSON in `config` with a checksum (and, in encrypted
/// repositories, a MAC under a key derived from the master key).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub id: Id,
    pub encrypted: bool,
    pub chunker: ChunkerParams,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
    /// zstd level for blobs (0 disables compression).
    pub compression_level: i32,
    pub created: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct StoredConfig {
    #[serde(flatten)]
    config: Config,
    checksum: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// What `init` may choose; the defaults are what users get.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub pack_size: u32,
    pub compression_level: i32,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: 8 * 1024 * 1024,
            compression_level: 3,
            kdf: KdfParams::default(),
        }
    }
}

/// How to unlock an encrypted repository.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    /// The master key itself, as written by `coffer key export`.
    MasterKey(MasterKey),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Secret::Password(..)",
            Secret::MasterKey(_) => "Secret::MasterKey(..)",
        })
    }
}

/// A key file: the master key wrapped by a password through argon2id.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    kdf: String,
    params: KdfParams,
    salt: String,
    nonce: String,
    wrapped_key: String,
    created: DateTime<Utc>,
    host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    checksum: String,
}

/// The exported master key, for safe keeping.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyExport {
    pub repository: Id,
    pub master_key: String,
}

impl KeyExport {
    pub fn parse(text: &str) -> Result<(Id, MasterKey)> {
        let bad = || {
            Error::Invalid(
                "the key file is not a Coffer key export (JSON with repository and master_key)"
                    .into(),
            )
        };
        let k: KeyExport = serde_json::from_str(text).map_err(|_| bad())?;
        Ok((
            k.repository,
            MasterKey::from_hex(&k.master_key).ok_or_else(bad)?,
        ))
    }
}

fn checksum_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

#[derive(Clone)]
pub struct Repository {
    /// `metered`, as the engine uses it.
    backend: Arc<dyn Backend>,
    metered: Arc<Metered>,
    cache: Option<Arc<Cache>>,
    config: Config,
    master: Option<MasterKey>,
    keys: Option<Keys>,
    ids: IdHasher,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("id", &self.config.id)
            .finish()
    }
}

pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl Repository {
    /// Create a new repository. `password: None` makes an unencrypted one.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: Option<&str>,
        opts: InitOptions,
    ) -> Result<Self> {
        let backend = Arc::new(Metered::new(backend));
        opts.chunker.check()?;
        if !(1 << 20..=256 << 20).contains(&opts.pack_size) {
            return Err(Error::Invalid(
                "pack size must be between 1 MiB and 256 MiB".into(),
            ));
        }
        if !(0..=19).contains(&opts.compression_level) {
            return Err(Error::Invalid(
                "compression level must be between 0 and 19".into(),
            ));
        }
        if password.is_some_and(str::is_empty) {
            return Err(Error::Invalid("the password is empty".into()));
        }
        backend.create()?;
        if backend.size(CONFIG)?.is_some() {
            return Err(Error::AlreadyExists(backend.location()));
        }
        if !backend.list(KEYS)?.is_empty() || !backend.list(SNAPSHOTS)?.is_empty() {
            return Err(Error::Invalid(format!(
                "{} is not empty but has no config; refusing to initialize over it",
                backend.location()
            )));
        }
        let config = Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            encrypted: password.is_some(),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created: Utc::now(),
        };
        let master = password.map(|_| MasterKey::generate());
        let repo = Repository::assemble(backend, config, master);
        if let Some(pw) = password {
            repo.add_key(pw, opts.kdf)?;
        }
        // The config is written last: a crash during init leaves no half-made repository.
        repo.write_config()?;
        Ok(repo)
    }

    pub fn open(backend: Arc<dyn Backend>, secret: Option<&Secret>) -> Result<Self> {
        let backend = Arc::new(Metered::new(backend));
        let raw = match backend.read(CONFIG) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Err(Error::NotARepository(backend.location())),
            Err(e) => return Err(e.into()),
        };
        let stored = Self::parse_config(&raw)?;
        let config = stored.config;
        if config.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(config.version));
        }
        if !config.encrypted {
            if !backend.list(KEYS)?.is_empty() {
                return Err(Error::damaged(
                    "config",
                    "it says the repository is unencrypted but key files exist (was it tampered with?)",
                ));
            }
            return Ok(Repository::assemble(backend, config, None));
        }
        let master = match secret {
            None => return Err(Error::PasswordRequired),
            Some(Secret::MasterKey(k)) => k.clone(),
            Some(Secret::Password(pw)) => Self::unlock(&*backend, &config, pw)?,
        };
        let repo = Repository::assemble(backend, config, Some(master));
        let expected = repo.config_mac(&raw_config_json(&repo.config)?);
        if stored.mac.as_deref() != Some(expected.as_str()) {
            return Err(match secret {
                Some(Secret::MasterKey(_)) => Error::WrongKeyFile,
                _ => Error::damaged("config", "its authentication code does not match the key"),
            });
        }
        Ok(repo)
    }

    fn assemble(metered: Arc<Metered>, config: Config, master: Option<MasterKey>) -> Self {
        let keys = master.as_ref().map(Keys::derive);
        let ids = IdHasher::new(keys.as_ref());
        Repository {
            backend: metered.clone(),
            metered,
            cache: None,
            config,
            master,
            keys,
            ids,
        }
    }

    fn parse_config(raw: &[u8]) -> Result<StoredConfig> {
        let stored: StoredConfig = serde_json::from_slice(raw)
            .map_err(|e| Error::damaged("config", format!("it is not valid: {e}")))?;
        if checksum_hex(&raw_config_json(&stored.config)?) != stored.checksum {
            return Err(Error::damaged(
                "config",
                "its checksum does not match its content",
            ));
        }
        Ok(stored)
    }

    fn config_mac(&self, json: &[u8]) -> String {
        let k = self.keys.as_ref().expect("encrypted repository");
        blake3::keyed_hash(&k.config_mac, json).to_hex().to_string()
    }

    fn write_config(&self) -> Result<()> {
        let json = raw_config_json(&self.config)?;
        let stored = StoredConfig {
            config: self.config.clone(),
            checksum: checksum_hex(&json),
            mac: self.keys.as_ref().map(|_| self.config_mac(&json)),
        };
        let text = serde_json::to_vec_pretty(&stored).expect("config serializes");
        self.backend.write(CONFIG, &text)?;
        Ok(())
    }

    fn unlock(backend: &dyn Backend, config: &Config, password: &str) -> Result<MasterKey> {
        let files = backend.list(KEYS)?;
        if files.is_empty() {
            return Err(Error::damaged(
                "keys/",
                "the repository is encrypted but has no key file",
            ));
        }
        let mut damaged = None;
        for f in &files {
            let raw = backend.read(&f.name)?;
            match Self::parse_key_file(&raw, &f.name) {
                Ok(kf) => {
                    if let Some(k) = Self::try_key_file(&kf, config, password)? {
                        return Ok(k);
                    }
                }
                Err(e) => damaged = Some(e),
            }
        }
        Err(damaged.unwrap_or(Error::WrongPassword))
    }

    fn parse_key_file(raw: &[u8], name: &str) -> Result<KeyFile> {
        let mut kf: KeyFile = serde_json::from_slice(raw)
            .map_err(|e| Error::damaged(name, format!("it is not a valid key file: {e}")))?;
        let sum = std::mem::take(&mut kf.checksum);
        let json = serde_json::to_vec(&kf).expect("key file serializes");
        if checksum_hex(&json) != sum {
            return Err(Error::damaged(
                name,
                "its checksum does not match its content",
            ));
        }
        if kf.version != 1 || kf.kdf != "argon2id" {
            return Err(Error::damaged(
                name,
                "unknown key file version or key derivation",
            ));
        }
        Ok(kf)
    }

    fn try_key_file(kf: &KeyFile, config: &Config, password: &str) -> Result<Option<MasterKey>> {
        let bad = || Error::damaged("key file", "malformed hex field");
        let salt = hex::decode(&kf.salt).map_err(|_| bad())?;
        let nonce: [u8; 12] = hex::decode(&kf.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(bad)?;
        let wrapped = hex::decode(&kf.wrapped_key).map_err(|_| bad())?;
        let kek = crypto::password_kek(password.as_bytes(), &salt, kf.params)?;
        Ok(crypto::unwrap_key(&kek, &nonce, &wrapped, &config.id.0))
    }

    /// Add a key file that opens the repository with `password`.
    pub fn add_key(&self, password: &str, params: KdfParams) -> Result<Id> {
        let master = self
            .master
            .as_ref()
            .ok_or_else(|| Error::Invalid("the repository is not encrypted".into()))?;
        let mut salt = [0u8; 16];
        crypto::fill_random(&mut salt);
        let kek = crypto::password_kek(password.as_bytes(), &salt, params)?;
        let (nonce, wrapped) = crypto::wrap_key(&kek, master, &self.config.id.0);
        let mut kf = KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            wrapped_key: hex::encode(wrapped),
            created: Utc::now(),
            host: hostname(),
            checksum: String::new(),
        };
        kf.checksum = checksum_hex(&serde_json::to_vec(&kf).expect("key file serializes"));
        let id = Id::random();
        self.backend.write(
            &object_name(KEYS, &id),
            &serde_json::to_vec_pretty(&kf).expect("serializes"),
        )?;
        Ok(id)
    }

    /// Remove the key files that open the repository with `password`, but never the last
    /// way in: refused (`Invalid`) when no other key file would remain. Returns how many went.
    /// Key files that cannot be read are left alone.
    pub fn remove_key(&self, password: &str) -> Result<usize> {
        let mut opening = vec![];
        let files = self.backend.list(KEYS)?;
        for f in &files {
            let raw = self.backend.read(&f.name)?;
            if let Ok(kf) = Self::parse_key_file(&raw, &f.name)
                && Self::try_key_file(&kf, &self.config, password)?.is_some()
            {
                opening.push(f.name.clone());
            }
        }
        if opening.len() == files.len() {
            return Err(Error::Invalid(
                "that password opens every key file: removing them would lock the repository"
                    .into(),
            ));
        }
        for name in &opening {
            self.backend.delete(name)?;
        }
        Ok(opening.len())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Keep what is small and read often (index files, snapshots, the packs of trees) in a
    /// cache under `base` (`base/<repository id>`), when the repository is remote. Without a
    /// cache, or when it cannot be made, everything is read from the repository.
    pub fn with_cache(mut self, base: &Path) -> Self {
        if self.backend.is_remote() {
            self.cache = Cache::open(base, &self.config.id, cache::DEFAULT_LIMIT).map(Arc::new);
        }
        self
    }

    /// This repository without its cache: what checks the repository itself (verify) reads
    /// every object from it.
    pub fn without_cache(&self) -> Repository {
        Repository {
            cache: None,
            ..self.clone()
        }
    }

    /// This repository read through `backend`, a view of its own storage (verify's spool).
    pub(crate) fn reading_through(&self, backend: Arc<dyn Backend>) -> Repository {
        Repository {
            backend,
            ..self.clone()
        }
    }

    /// Where the cache is, when there is one.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_deref().map(Cache::dir)
    }

    /// Drop the cache entries of `folder` that the repository's listing `listed` no longer
    /// names.
    pub(crate) fn forget_unlisted<'a>(&self, folder: &str, listed: impl Iterator<Item = &'a str>) {
        if let Some(c) = &self.cache {
            c.retain(folder, listed);
        }
    }

    /// `len` bytes at `offset` of a pack; from the cache for a pack of trees (`trees`) when
    /// there is one.
    pub(crate) fn read_pack_range(
        &self,
        pack: &Id,
        offset: u64,
        len: u64,
        trees: bool,
    ) -> BackendResult<Vec<u8>> {
        let name = pack_name(pack);
        match &self.cache {
            Some(c) if trees => c.range(&name, offset, len, || self.backend.read(&name)),
            _ => self.backend.read_range(&name, offset, len),
        }
    }

    /// The requests made to storage through this repository (and its clones) so far.
    pub fn request_stats(&self) -> RequestStats {
        self.metered.stats()
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The master key for safe keeping; `None` for unencrypted repositories.
    pub fn export_key(&self) -> Option<KeyExport> {
        self.master.as_ref().map(|m| KeyExport {
            repository: self.config.id,
            master_key: m.to_hex(),
        })
    }

    pub(crate) fn blob_id(&self, data: &[u8]) -> Id {
        self.ids.id(data)
    }

    pub(crate) fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    pub(crate) fn chunker(&self) -> Chunker {
        let key = match &self.keys {
            Some(k) => k.chunker,
            None => Chunker::plain_key(),
        };
        Chunker::new(self.config.chunker, &key)
    }

    /// A fresh random seed for a new encrypted object.
    pub(crate) fn new_seed() -> [u8; SEED_LEN] {
        let mut s = [0u8; SEED_LEN];
        crypto::fill_random(&mut s);
        s
    }

    /// Wrap `payload` as a sealed object with the given magic (see docs/repository-format.md).
    pub(crate) fn seal(&self, magic: &[u8; 4], payload: Vec<u8>) -> Vec<u8> {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(magic);
        header[4] = 1;
        match &self.keys {
            None => {
                let mut out = Vec::with_capacity(8 + payload.len());
                out.extend_from_slice(&header);
                out.extend_from_slice(&payload);
                out
            }
            Some(keys) => {
                header[5] = 1;
                let seed = Self::new_seed();
                let mut body = payload;
                keys.object_key(&seed)
                    .seal(crypto::final_nonce(), &header, &mut body);
                let mut out = Vec::with_capacity(8 + SEED_LEN + body.len());
                out.extend_from_slice(&header);
                out.extend_from_slice(&seed);
                out.extend_from_slice(&body);
                out
            }
        }
    }

    /// Check and open a sealed object; `what` names it in errors.
    pub(crate) fn unseal(&self, magic: &[u8; 4], what: &str, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() < 8 || &data[..4] != magic {
            return Err(Error::damaged(
                what,
                "it does not start with the expected header",
            ));
        }
        if data[4] != 1 {
            return Err(Error::damaged(
                what,
                format!("unknown object version {}", data[4]),
            ));
        }
        let encrypted = data[5] & 1 == 1;
        match (&self.keys, encrypted) {
            (None, false) => Ok(data[8..].to_vec()),
            (Some(keys), true) => {
                if data.len() < 8 + SEED_LEN + crypto::TAG_LEN {
                    return Err(Error::damaged(what, "it is too short"));
                }
                let seed: [u8; SEED_LEN] =
                    data[8..8 + SEED_LEN].try_into().expect("length checked");
                let mut body = data[8 + SEED_LEN..].to_vec();
                if !keys
                    .object_key(&seed)
                    .open(crypto::final_nonce(), &data[..8], &mut body)
                {
                    return Err(Error::damaged(
                        what,
                        "it fails authentication (modified or corrupted)",
                    ));
                }
                Ok(body)
            }
            _ => Err(Error::damaged(
                what,
                "its encryption flag does not match the repository",
            )),
        }
    }

    /// Store a content-addressed sealed object in `dir`; returns its id and stored size.
    pub(crate) fn write_object(
        &self,
        dir: &str,
        magic: &[u8; 4],
        payload: Vec<u8>,
    ) -> Result<(Id, u64)> {
        let data = self.seal(magic, payload);
        let id = Id::of_object(&data);
        self.backend.write(&object_name(dir, &id), &data)?;
        Ok((id, data.len() as u64))
    }

    /// Read a content-addressed object and check that its bytes still hash to its name.
    pub(crate) fn read_object(&self, dir: &str, id: &Id, magic: &[u8; 4]) -> Result<Vec<u8>> {
        let name = object_name(dir, id);
        if let Some(data) = self.cache.as_ref().and_then(|c| c.get(&name)) {
            return self.unseal(magic, &name, &data);
        }
        let data = self.backend.read(&name)?;
        if Id::of_object(&data) != *id {
            return Err(Error::damaged(
                &name,
                "its content does not match its name (bytes changed or truncated)",
            ));
        }
        if let Some(c) = &self.cache {
            c.put(&name, &data);
        }
        self.unseal(magic, &name, &data)
    }
}

fn raw_config_json(c: &Config) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(c).expect("config serializes"))
}
