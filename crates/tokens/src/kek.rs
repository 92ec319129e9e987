//! The key-encryption key (KEK) and the sealing of private signing keys at rest.
//!
//! Private keys never reach the database in the clear: each is sealed with AES-256-GCM under
//! the KEK from the configuration, with the key's `kid` as associated data, so a sealed blob
//! copied onto another key's row does not open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The KEK's length in bytes (AES-256).
const KEK_LEN: usize = 32;

/// What [`Kek::parse`] accepts, said once so every refusal names it.
const ACCEPTED_FORMS: &str = "the key-encryption key must be 32 bytes, written as base64 \
     (43 or 44 characters, standard or url-safe alphabet, padding optional) or as 64 hex \
     characters; generate one with `openssl rand -base64 32`";

/// The key that seals private signing keys at rest. `Debug` never shows it.
#[derive(Clone)]
pub struct Kek([u8; KEK_LEN]);

impl Kek {
    /// Reads a KEK from configuration text: base64 (standard or url-safe, padded or not) or
    /// 64 hex characters. Surrounding whitespace (a trailing newline in a secret file) is
    /// ignored.
    ///
    /// The error never repeats the input: it is a secret even when malformed.
    pub fn parse(text: &str) -> Result<Kek, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("the key-encryption key is empty; {ACCEPTED_FORMS}"));
        }
        // Hex first: 64 hex characters are also valid base64 (of 48 bytes), and hex is what
        // the operator meant.
        if text.len() == 2 * KEK_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; KEK_LEN];
            hex::decode_to_slice(text, &mut key).map_err(|_| ACCEPTED_FORMS.to_string())?;
            return Ok(Kek(key));
        }
        let indifferent =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let engines = [
            GeneralPurpose::new(&alphabet::STANDARD, indifferent),
            GeneralPurpose::new(&alphabet::URL_SAFE, indifferent),
        ];
        for engine in &engines {
            if let Ok(bytes) = engine.decode(text) {
                return <[u8; KEK_LEN]>::try_from(bytes.as_slice())
                    .map(Kek)
                    .map_err(|_| {
                        format!(
                            "the key-encryption key decodes to {} bytes, not {KEK_LEN}; \
                             {ACCEPTED_FORMS}",
                            bytes.len()
                        )
                    });
            }
        }
        Err(format!(
            "the key-encryption key ({} characters) is neither base64 nor hex; {ACCEPTED_FORMS}",
            text.chars().count()
        ))
    }

    /// A fresh random KEK (for `countersign dev` and for operators who need one).
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails, which leaves nothing safe to do.
    pub fn generate() -> Kek {
        let mut key = [0u8; KEK_LEN];
        aws_lc_rs::rand::fill(&mut key).expect("the system random source failed");
        Kek(key)
    }

    /// The KEK as standard padded base64, the form [`Kek::parse`] reads back.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn aead_key(&self) -> RandomizedNonceKey {
        // Only fails for a key of the wrong length, which the type rules out.
        RandomizedNonceKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256-GCM key")
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// Seals `plaintext` under `kek`: AES-256-GCM with a fresh random 96-bit nonce and `aad`
/// (the key's `kid`) as associated data. Returns nonce ‖ ciphertext ‖ tag.
///
/// # Panics
///
/// If the system random source fails while drawing the nonce.
pub fn seal(kek: &Kek, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut in_out = plaintext.to_vec();
    // The nonce is drawn inside aws-lc from the system random source; 96 random bits are
    // plenty for the handful of keys one KEK ever seals.
    let nonce = kek
        .aead_key()
        .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
        .expect("sealing a signing key cannot fail short of a broken random source");
    let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&in_out);
    out
}

/// Opens what [`seal`] produced. Fails when the KEK or the `aad` differ from the sealing
/// ones, or when a single byte was changed.
pub fn open(kek: &Kek, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
    const REFUSED: &str = "cannot unseal signing key: it was sealed under another key-encryption key, for \
         another key id, or altered since (wrong key-encryption key?)";
    let tag_len = AES_256_GCM.tag_len();
    if sealed.len() < NONCE_LEN + tag_len {
        return Err(format!(
            "cannot unseal signing key: the sealed value is {} bytes, too short to hold a \
             nonce and a tag (wrong key-encryption key?)",
            sealed.len()
        ));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| REFUSED.to_string())?;
    let mut in_out = ciphertext.to_vec();
    let plain_len = kek
        .aead_key()
        .open_in_place(nonce, Aad::from(aad), &mut in_out)
        .map_err(|_| REFUSED.to_string())?
        .len();
    in_out.truncate(plain_len);
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let kek = Kek::generate();
        let sealed = seal(&kek, b"kid-1", b"private key bytes");
        assert_eq!(sealed.len(), NONCE_LEN + 17 + 16);
        assert_eq!(open(&kek, b"kid-1", &sealed).unwrap(), b"private key bytes");
        // A fresh nonce each time: the same plaintext never seals to the same bytes.
        assert_ne!(seal(&kek, b"kid-1", b"private key bytes"), sealed);
    }

    #[test]
    fn open_refuses_a_wrong_kek_a_flipped_byte_and_a_wrong_kid() {
        let kek = Kek::generate();
        let sealed = seal(&kek, b"kid-1", b"secret");

        let err = open(&Kek::generate(), b"kid-1", &sealed).unwrap_err();
        assert!(err.starts_with("cannot unseal signing key"), "{err}");
        assert!(err.contains("wrong key-encryption key?"), "{err}");

        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(open(&kek, b"kid-1", &tampered).is_err(), "byte {i} flipped");
        }

        assert!(open(&kek, b"kid-2", &sealed).is_err());
        assert!(open(&kek, b"kid-1", &sealed[..20]).is_err());
        assert!(open(&kek, b"kid-1", &[]).is_err());
    }

    #[test]
    fn parse_reads_every_accepted_form() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xfb);
        let std_padded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let std_bare = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        let url_padded = base64::engine::general_purpose::URL_SAFE.encode(bytes);
        let url_bare = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        // These bytes produce both '+'/'/' and '-'/'_' forms, so both alphabets are exercised.
        assert_ne!(std_padded.replace('=', ""), url_bare);
        let hex_lower = hex::encode(bytes);
        let hex_upper = hex_lower.to_uppercase();
        for text in [
            std_padded.clone(),
            std_bare,
            url_padded,
            url_bare,
            hex_lower,
            hex_upper,
            format!("  {std_padded}\n"),
        ] {
            let kek = Kek::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(kek.0, bytes, "{text:?}");
        }
        let kek = Kek::generate();
        assert_eq!(Kek::parse(&kek.to_base64()).unwrap().0, kek.0);
    }

    #[test]
    fn parse_refuses_anything_else_and_says_what_it_accepts() {
        for text in [
            "",
            "   ",
            "not a key at all!",
            &base64::engine::general_purpose::STANDARD.encode([7u8; 16]),
            &base64::engine::general_purpose::STANDARD.encode([7u8; 33]),
            &"ab".repeat(31),
            &"zz".repeat(32),
        ] {
            let err = Kek::parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} parsed"));
            assert!(err.contains("base64") && err.contains("64 hex"), "{err}");
            assert!(
                text.len() < 8 || !err.contains(text),
                "the error echoes the input"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let kek = Kek::parse(&"11".repeat(32)).unwrap();
        let shown = format!("{kek:?}");
        assert_eq!(shown, "Kek([redacted])");
    }
}
