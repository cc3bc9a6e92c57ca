//! Encryption of originals for a region's vault: AES-256-GCM in the STREAM construction
//! (1 MiB segments, each authenticated, the last one marked), one random key per clip. The key
//! is stored in the region's key store, apart from the data: deleting it makes every copy of
//! the encrypted original unreadable (crypto-shredding).
//!
//! Format: `OBSCV1` (6 bytes) · nonce prefix (7 bytes) · segments of ciphertext+tag.

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use rand::RngCore;

const MAGIC: &[u8; 6] = b"OBSCV1";
const SEGMENT: usize = 1 << 20;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("encryption failed")]
    Encrypt,
    #[error("decryption failed (wrong key or damaged data)")]
    Decrypt,
}

/// A fresh random 256-bit key.
pub fn new_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    k
}

pub fn encrypt(key: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let mut prefix = [0u8; 7];
    OsRng.fill_bytes(&mut prefix);
    let mut enc = EncryptorBE32::from_aead(cipher, (&prefix).into());
    let mut out = Vec::with_capacity(plain.len() + plain.len() / SEGMENT * TAG + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&prefix);
    let mut chunks = plain.chunks(SEGMENT).peekable();
    if chunks.peek().is_none() {
        let last = enc
            .encrypt_last(&b""[..])
            .map_err(|_| VaultError::Encrypt)?;
        out.extend_from_slice(&last);
        return Ok(out);
    }
    while let Some(c) = chunks.next() {
        if chunks.peek().is_none() {
            out.extend_from_slice(&enc.encrypt_last(c).map_err(|_| VaultError::Encrypt)?);
            break;
        }
        out.extend_from_slice(&enc.encrypt_next(c).map_err(|_| VaultError::Encrypt)?);
    }
    Ok(out)
}

pub fn decrypt(key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, VaultError> {
    if data.len() < MAGIC.len() + 7 + TAG || &data[..6] != MAGIC {
        return Err(VaultError::Decrypt);
    }
    let prefix: [u8; 7] = data[6..13].try_into().map_err(|_| VaultError::Decrypt)?;
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let mut dec = DecryptorBE32::from_aead(cipher, (&prefix).into());
    let body = &data[13..];
    let mut out = Vec::with_capacity(body.len());
    let mut chunks = body.chunks(SEGMENT + TAG).peekable();
    while let Some(c) = chunks.next() {
        if chunks.peek().is_none() {
            out.extend_from_slice(&dec.decrypt_last(c).map_err(|_| VaultError::Decrypt)?);
            break;
        }
        out.extend_from_slice(&dec.decrypt_next(c).map_err(|_| VaultError::Decrypt)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key_or_tampering_fail() {
        let k = new_key();
        for len in [0usize, 10, SEGMENT, SEGMENT + 5, 3 * SEGMENT] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let c = encrypt(&k, &plain).unwrap();
            assert_eq!(decrypt(&k, &c).unwrap(), plain, "len {len}");
            assert!(decrypt(&new_key(), &c).is_err());
            if len > 0 {
                let mut t = c.clone();
                let n = t.len();
                t[n / 2] ^= 1;
                assert!(decrypt(&k, &t).is_err());
                // Truncating the last segment is detected.
                assert!(decrypt(&k, &c[..c.len() - 1]).is_err());
            }
        }
    }
}
