//! Standard Webhooks signatures: `v1,` followed by the base64 HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's decoded bytes.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The prefix Standard Webhooks secrets carry.
const SECRET_PREFIX: &str = "whsec_";

/// Decodes the secret's base64 with or without padding: the reference libraries pad before
/// decoding, so a secret they accept must not be refused here.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Signs one attempt of a message.
///
/// `secret` is `whsec_<base64>`; as in the reference libraries the prefix is optional and
/// the key is the base64-decoded rest. `body` must be the exact bytes sent. Returns
/// `v1,<base64 signature>`, the value of the `webhook-signature` header for a single secret
/// (several would be joined with spaces).
///
/// Errors never repeat the secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = LENIENT
        .decode(encoded.trim())
        .map_err(|_| "the webhook secret is not valid base64 after 'whsec_'".to_string())?;
    if key.is_empty() {
        return Err("the webhook secret is empty".into());
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut context = hmac::Context::with_key(&key);
    context.update(msg_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector every Standard Webhooks reference library checks.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reproduces_the_reference_vector() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY).unwrap(), EXPECTED);
    }

    #[test]
    fn the_prefix_and_padding_are_optional() {
        let bare = SECRET.trim_start_matches(SECRET_PREFIX);
        assert_eq!(sign(bare, ID, TIMESTAMP, BODY).unwrap(), EXPECTED);
        // 24 bytes encode to 32 characters without padding; one byte less needs padding.
        let padded = sign(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ID,
            TIMESTAMP,
            BODY,
        )
        .unwrap();
        let unpadded = sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ID, TIMESTAMP, BODY).unwrap();
        assert_eq!(padded, unpadded);
    }

    #[test]
    fn every_input_changes_the_signature() {
        assert_ne!(
            sign(SECRET, "msg_other", TIMESTAMP, BODY).unwrap(),
            EXPECTED
        );
        assert_ne!(sign(SECRET, ID, TIMESTAMP + 1, BODY).unwrap(), EXPECTED);
        assert_ne!(
            sign(SECRET, ID, TIMESTAMP, br#"{"test": 2432232315}"#).unwrap(),
            EXPECTED
        );
        assert_ne!(
            sign(
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                ID,
                TIMESTAMP,
                BODY
            )
            .unwrap(),
            EXPECTED
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_being_echoed() {
        for bad in ["whsec_not base64!", "whsec_", "", "whsec_%%%%"] {
            let err = sign(bad, ID, TIMESTAMP, BODY).unwrap_err();
            assert!(err.starts_with("the webhook secret"), "{err}");
            if bad.len() > "whsec_".len() {
                assert!(!err.contains(bad), "{err}");
            }
        }
    }
}
