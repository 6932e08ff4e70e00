//! The webhook envelope of pushed events: the `{"encrypt": …}` body (AES-256-CBC, PKCS#7, the IV
//! as the ciphertext's first 16 bytes, key = SHA-256 of the app's encrypt key), the
//! `X-Lark-Signature` header, and the constant-time comparison of secrets.
//!
//! Invariants:
//! - The AES key is derived once, when an [`EncryptKey`] is made; neither the key nor the
//!   secret it comes from is printed by `Debug` or in any error.
//! - [`EncryptKey::decrypt`] accepts exactly what the platform produces: base64 of
//!   IV ‖ ciphertext, the ciphertext a non-empty whole number of blocks, valid PKCS#7 padding.
//!   Anything else is an [`EnvelopeError`]; no guessing (the Go SDK's "from the first `{` to the
//!   last `}`" would accept a body with bad padding).
//! - The signature is plain SHA-256 (not an HMAC) of timestamp ‖ nonce ‖ encrypt key ‖ the raw
//!   body bytes, as lowercase hex, and it is compared in constant time.
//!
//! Shared by the receivers and the simulated tenant (which encrypts and signs); the known-answer
//! tests below pin both directions to vectors computed outside this code (OpenSSL).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header carrying the request's timestamp (signed).
pub const TIMESTAMP_HEADER: &str = "X-Lark-Request-Timestamp";
/// The header carrying the request's nonce (signed).
pub const NONCE_HEADER: &str = "X-Lark-Request-Nonce";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Lark-Signature";

const BLOCK: usize = 16;

/// Why an `encrypt` value could not be opened. Says nothing of the key or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the `encrypt` value is not base64")]
    NotBase64,
    #[error(
        "the `encrypt` value is {0} bytes once decoded: it must be a 16-byte IV and a non-empty whole number of 16-byte blocks"
    )]
    BadLength(usize),
    #[error(
        "the `encrypt` value does not decrypt with this encrypt key (bad PKCS#7 padding): the key is wrong or the body was altered"
    )]
    BadPadding,
}

/// An app's encrypt key, ready to open and seal envelopes and to sign bodies.
#[derive(Clone)]
pub struct EncryptKey {
    secret: String,
    aes_key: [u8; 32],
}

impl std::fmt::Debug for EncryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptKey(<redacted>)")
    }
}

impl EncryptKey {
    pub fn new(secret: &str) -> EncryptKey {
        let mut aes_key = [0u8; 32];
        aes_key.copy_from_slice(&Sha256::digest(secret.as_bytes()));
        EncryptKey {
            secret: secret.to_owned(),
            aes_key,
        }
    }

    /// The plaintext of an `encrypt` value.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, EnvelopeError> {
        let data = BASE64
            .decode(encrypt.trim())
            .map_err(|_| EnvelopeError::NotBase64)?;
        if data.len() < 2 * BLOCK || data.len() % BLOCK != 0 {
            return Err(EnvelopeError::BadLength(data.len()));
        }
        let (iv, ciphertext) = data.split_at(BLOCK);
        let mut buffer = ciphertext.to_vec();
        let decryptor = cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.aes_key, iv)
            .expect("a 32-byte key and a 16-byte IV");
        let plain_len = decryptor
            .decrypt_padded_mut::<Pkcs7>(&mut buffer)
            .map_err(|_| EnvelopeError::BadPadding)?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }

    /// The `encrypt` value of `plaintext` with this IV: base64(IV ‖ AES-256-CBC(PKCS#7)).
    pub fn encrypt(&self, plaintext: &[u8], iv: [u8; 16]) -> String {
        let len = plaintext.len();
        let mut buffer = vec![0u8; (len / BLOCK + 1) * BLOCK];
        buffer[..len].copy_from_slice(plaintext);
        let encryptor = cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.aes_key, &iv)
            .expect("a 32-byte key and a 16-byte IV");
        let sealed = encryptor
            .encrypt_padded_mut::<Pkcs7>(&mut buffer, len)
            .expect("the buffer has room for a whole padding block")
            .len();
        let mut data = Vec::with_capacity(BLOCK + sealed);
        data.extend_from_slice(&iv);
        data.extend_from_slice(&buffer[..sealed]);
        BASE64.encode(data)
    }

    /// `X-Lark-Signature` of a body: lowercase hex SHA-256 of timestamp ‖ nonce ‖ key ‖ body.
    pub fn signature(&self, timestamp: &str, nonce: &str, body: &[u8]) -> String {
        let digest = Sha256::new()
            .chain_update(timestamp.as_bytes())
            .chain_update(nonce.as_bytes())
            .chain_update(self.secret.as_bytes())
            .chain_update(body)
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` is this body's, compared in constant time (case-insensitively, as
    /// hex digits).
    pub fn verify(&self, timestamp: &str, nonce: &str, body: &[u8], signature: &str) -> bool {
        let expected = self.signature(timestamp, nonce, body);
        secrets_match(&expected, &signature.to_ascii_lowercase())
    }
}

/// Whether two secrets (tokens, signatures) are equal, in time that depends on their lengths
/// only, not on where they differ.
pub fn secrets_match(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed with OpenSSL, not with this code:
    //   key=$(printf %s test-encrypt-key | sha256sum | cut -c1-64)
    //   printf %s '{"hello":"world"}' | openssl enc -aes-256-cbc -K $key \
    //     -iv 000102030405060708090a0b0c0d0e0f | base64   (with the IV bytes prefixed)
    const SECRET: &str = "test-encrypt-key";
    const PLAIN: &str = r#"{"hello":"world"}"#;
    const IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    #[test]
    fn encrypts_and_decrypts_like_openssl() {
        let key = EncryptKey::new(SECRET);
        let sealed = key.encrypt(PLAIN.as_bytes(), IV);
        assert_eq!(sealed, OPENSSL_SEALED);
        assert_eq!(key.decrypt(OPENSSL_SEALED).unwrap(), PLAIN.as_bytes());
    }

    #[test]
    fn signs_like_sha256sum() {
        // printf %s '1700000000nonce-1test-encrypt-key{"encrypt":"abc"}' | sha256sum
        let key = EncryptKey::new(SECRET);
        let body = br#"{"encrypt":"abc"}"#;
        assert_eq!(
            key.signature("1700000000", "nonce-1", body),
            SHA256SUM_SIGNATURE
        );
        assert!(key.verify("1700000000", "nonce-1", body, SHA256SUM_SIGNATURE));
        assert!(key.verify(
            "1700000000",
            "nonce-1",
            body,
            &SHA256SUM_SIGNATURE.to_uppercase()
        ));
        assert!(!key.verify("1700000001", "nonce-1", body, SHA256SUM_SIGNATURE));
        assert!(!key.verify("1700000000", "nonce-1", b"{}", SHA256SUM_SIGNATURE));
    }

    #[test]
    fn refuses_what_the_platform_would_never_send() {
        let key = EncryptKey::new(SECRET);
        assert_eq!(key.decrypt("not base64!"), Err(EnvelopeError::NotBase64));
        // Truncated: the IV and half a block.
        let truncated = BASE64.encode([0u8; 24]);
        assert_eq!(key.decrypt(&truncated), Err(EnvelopeError::BadLength(24)));
        // The IV alone.
        assert_eq!(
            key.decrypt(&BASE64.encode([0u8; 16])),
            Err(EnvelopeError::BadLength(16))
        );
        // A wrong key gives bad padding (with overwhelming probability; this vector does).
        let other = EncryptKey::new("another-key");
        assert_eq!(
            other.decrypt(OPENSSL_SEALED),
            Err(EnvelopeError::BadPadding)
        );
        // A flipped bit in the last block's predecessor breaks the padding too.
        let mut data = BASE64.decode(OPENSSL_SEALED).unwrap();
        let n = data.len();
        data[n - BLOCK - 1] ^= 0x01;
        assert_eq!(
            key.decrypt(&BASE64.encode(&data)),
            Err(EnvelopeError::BadPadding)
        );
    }

    #[test]
    fn a_whole_padding_block_when_the_plaintext_is_aligned() {
        let key = EncryptKey::new(SECRET);
        let plain = [b'x'; 32];
        let sealed = BASE64.decode(key.encrypt(&plain, IV)).unwrap();
        assert_eq!(sealed.len(), 16 + 48);
        assert_eq!(key.decrypt(&BASE64.encode(&sealed)).unwrap(), plain);
    }

    #[test]
    fn secrets_are_never_printed() {
        let key = EncryptKey::new(SECRET);
        assert!(!format!("{key:?}").contains(SECRET));
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "abcd"));
    }

    const OPENSSL_SEALED: &str = "AAECAwQFBgcICQoLDA0OD1efcS0jI5bRMEhE8Q+aBkeNEfwuQWGVFKelHonXPoHP";
    const SHA256SUM_SIGNATURE: &str =
        "d46291499dd6c0e1b772f5b4c40b30912c3b051b569547a76c7e59114b2a27f2";
}
