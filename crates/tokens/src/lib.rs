//! countersign's own signing keys and the grant tokens signed with them.
//!
//! - [`kek`]: the key-encryption key from the configuration and the AES-256-GCM sealing of
//!   private keys at rest.
//! - [`keys`]: key generation (ES256, EdDSA, RS256) and the public JWK, whose RFC 7638
//!   thumbprint is the `kid`.
//! - [`ring`]: the [`KeyRing`] — keys loaded from the [`KeyStore`](countersign_core::KeyStore),
//!   rotation, the JWKS, signing (as the core's [`GrantSigner`](countersign_core::GrantSigner))
//!   and verification of our own tokens for introspection.
//!
//! Cryptography is aws-lc-rs, through jsonwebtoken's `aws_lc_rs` backend for JWS; no other
//! backend may be enabled in the same build, or jsonwebtoken refuses to pick one.

pub mod kek;
pub mod keys;
pub mod ring;

pub use kek::{Kek, open, seal};
pub use keys::{SigningAlg, generate_key};
pub use ring::{KeyRing, LEEWAY_SECS, TOKEN_TYPE};
