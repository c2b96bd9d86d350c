//! Keys, key derivation and authenticated encryption.
//!
//! Nonce scheme (documented in docs/repository-format.md): every encrypted object (pack, index,
//! snapshot, lock, prune plan) starts with a fresh random 192-bit seed. The object's AES-256-GCM
//! key is `BLAKE3-keyed(encryption_key, seed)`, and nonces inside one object are a counter
//! (blob number in a pack; a fixed value for the trailer or a whole sealed object). A nonce can
//! therefore only repeat under a key if two objects draw the same 192-bit seed: with 2^48
//! objects the probability is below 2^-96. This removes the 2^32-messages limit of random
//! 96-bit nonces under one key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::{Error, Result};
use crate::id::Id;

pub const SEED_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

pub(crate) fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// The repository's master key: 32 random bytes from which every other key is derived.
#[derive(Clone)]
pub struct MasterKey(pub(crate) [u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        fill_random(&mut k);
        MasterKey(k)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut k).ok()?;
        Some(MasterKey(k))
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Keys derived from the master key, each for one purpose.
#[derive(Clone)]
pub(crate) struct Keys {
    encryption: [u8; 32],
    chunk_id: [u8; 32],
    pub chunker: [u8; 32],
    pub config_mac: [u8; 32],
}

impl Keys {
    pub fn derive(master: &MasterKey) -> Self {
        let d = |ctx: &str| blake3::derive_key(ctx, &master.0);
        Keys {
            encryption: d("coffer 2026 repository v1 object encryption"),
            chunk_id: d("coffer 2026 repository v1 chunk id"),
            chunker: d("coffer 2026 repository v1 chunker gear table"),
            config_mac: d("coffer 2026 repository v1 config mac"),
        }
    }

    /// The AES-256-GCM key of one object, from its random seed.
    pub fn object_key(&self, seed: &[u8; SEED_LEN]) -> ObjectKey {
        let k = blake3::keyed_hash(&self.encryption, seed);
        let unbound = UnboundKey::new(&AES_256_GCM, k.as_bytes()).expect("32-byte key");
        ObjectKey(LessSafeKey::new(unbound))
    }
}

/// How blob ids are computed: keyed BLAKE3 in encrypted repositories (so the storage provider
/// cannot confirm that it holds a known plaintext), plain BLAKE3 otherwise.
#[derive(Clone)]
pub(crate) enum IdHasher {
    Plain,
    Keyed([u8; 32]),
}

impl IdHasher {
    pub fn new(keys: Option<&Keys>) -> Self {
        match keys {
            Some(k) => IdHasher::Keyed(k.chunk_id),
            None => IdHasher::Plain,
        }
    }
    pub fn id(&self, data: &[u8]) -> Id {
        match self {
            IdHasher::Plain => Id(*blake3::hash(data).as_bytes()),
            IdHasher::Keyed(k) => Id(*blake3::keyed_hash(k, data).as_bytes()),
        }
    }
}

pub(crate) struct ObjectKey(LessSafeKey);

/// Nonce for the blob with number `counter` inside an object.
pub(crate) fn counter_nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The nonce reserved for a pack's trailer and for whole sealed objects: no blob counter
/// can reach it.
pub(crate) fn final_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0xff; 12])
}

impl ObjectKey {
    /// Encrypt `buf` in place and append the tag.
    pub fn seal(&self, nonce: Nonce, aad: &[u8], buf: &mut Vec<u8>) {
        self.0
            .seal_in_place_append_tag(nonce, Aad::from(aad), buf)
            .expect("AES-GCM sealing cannot fail for in-range sizes");
    }

    /// Decrypt `buf` (ciphertext + tag) in place; false when authentication fails.
    pub fn open(&self, nonce: Nonce, aad: &[u8], buf: &mut Vec<u8>) -> bool {
        match self.open_in_place(nonce, aad, buf) {
            Some(plain) => {
                let n = plain.len();
                buf.truncate(n);
                true
            }
            None => false,
        }
    }

    /// Decrypt `buf` (ciphertext + tag) where it lies: the plaintext, at its start, or `None`
    /// when authentication fails.
    pub fn open_in_place<'b>(
        &self,
        nonce: Nonce,
        aad: &[u8],
        buf: &'b mut [u8],
    ) -> Option<&'b mut [u8]> {
        self.0.open_in_place(nonce, Aad::from(aad), buf).ok()
    }
}

/// Argon2id cost parameters recorded in each key file.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // 64 MiB, 3 passes, 2 lanes computed in parallel (RFC 9106 recommends several lanes;
        // the memory-hard work is the same, the wait is halved on two cores).
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 2,
        }
    }
}

impl KdfParams {
    fn check(&self) -> Result<()> {
        // Bounds keep a hostile key file from making us allocate gigabytes or spin for hours.
        let ok = (8..=4 * 1024 * 1024).contains(&self.m_cost)
            && (1..=64).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "key derivation parameters out of range: {self:?}"
            )))
        }
    }
}

/// Derive the key-encryption key from a password with argon2id.
pub(crate) fn password_kek(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32]> {
    p.check()?;
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| Error::Invalid(format!("key derivation parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::Invalid(format!("key derivation: {e}")))?;
    Ok(out)
}

/// Encrypt the master key under a key-encryption key. The nonce is random; it is used once
/// because every key file has its own random salt and therefore its own KEK.
pub(crate) fn wrap_key(kek: &[u8; 32], master: &MasterKey, aad: &[u8]) -> ([u8; 12], Vec<u8>) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
    let mut nonce = [0u8; 12];
    fill_random(&mut nonce);
    let mut buf = master.0.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .expect("sealing 32 bytes");
    (nonce, buf)
}

pub(crate) fn unwrap_key(
    kek: &[u8; 32],
    nonce: &[u8; 12],
    ct: &[u8],
    aad: &[u8],
) -> Option<MasterKey> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
    let k: [u8; 32] = plain.try_into().ok()?;
    Some(MasterKey(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_differ_per_seed_and_round_trip() {
        let keys = Keys::derive(&MasterKey::generate());
        let k1 = keys.object_key(&[1; SEED_LEN]);
        let k2 = keys.object_key(&[2; SEED_LEN]);
        let mut buf = b"hello".to_vec();
        k1.seal(counter_nonce(0), b"aad", &mut buf);
        let mut other = buf.clone();
        assert!(!k2.open(counter_nonce(0), b"aad", &mut other));
        let mut wrong_aad = buf.clone();
        assert!(!k1.open(counter_nonce(0), b"aae", &mut wrong_aad));
        assert!(k1.open(counter_nonce(0), b"aad", &mut buf));
        assert_eq!(buf, b"hello");
    }

    #[test]
    fn wrapped_master_key_needs_the_right_kek() {
        let m = MasterKey::generate();
        let p = KdfParams {
            m_cost: 8,
            t_cost: 1,
            p_cost: 1,
        };
        let kek = password_kek(b"pw", b"saltsaltsaltsalt", p).unwrap();
        let (nonce, ct) = wrap_key(&kek, &m, b"repo");
        assert_eq!(unwrap_key(&kek, &nonce, &ct, b"repo").unwrap().0, m.0);
        let bad = password_kek(b"px", b"saltsaltsaltsalt", p).unwrap();
        assert!(unwrap_key(&bad, &nonce, &ct, b"repo").is_none());
    }
}
