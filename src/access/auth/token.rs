//! The bearer token itself: how it is made, recognised and hashed. Only the hash is stored.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Marks intake tokens, so that secret scanners and people can recognise a leaked one.
const PREFIX: &str = "intake_";
const RANDOM_BYTES: usize = 32;
/// 32 bytes in unpadded base64url.
const ENCODED_LEN: usize = 43;

/// The SHA-256 of a token: what the database stores and looks tokens up by. A plain hash is
/// enough because the token carries 256 random bits; nothing can be guessed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

/// A freshly made token and its hash. The secret is printed once and never stored.
pub fn generate() -> Result<(SecretString, TokenHash), getrandom::Error> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random)?;
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let hash = hash(&token);
    Ok((SecretString::from(token), hash))
}

/// What an `Authorization` header value carries when it is `Bearer <credentials>`.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_matches(' '))
}

/// The token of an `Authorization` header value, if it is `Bearer <token>` with a well-formed
/// token; malformed ones never reach the database.
pub fn from_header(value: &[u8]) -> Option<TokenHash> {
    let token = bearer(value)?;
    let encoded = token.strip_prefix(PREFIX)?;
    let well_formed = encoded.len() == ENCODED_LEN
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| hash(token))
}

fn hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn generated_tokens_are_recognised_and_distinct() {
        let (a, hash_a) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), PREFIX.len() + ENCODED_LEN);
        let header = format!("Bearer {}", a.expose_secret());
        assert_eq!(from_header(header.as_bytes()), Some(hash_a));
        let header = format!("bearer  {}", a.expose_secret());
        assert_eq!(from_header(header.as_bytes()), Some(hash_a));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let (token, _) = generate().unwrap();
        let token = token.expose_secret();
        for header in [
            String::new(),
            "Bearer".into(),
            format!("Basic {token}"),
            format!("Bearer{token}"),
            format!("Bearer {}", &token[1..]),
            format!("Bearer {token}x"),
            format!("Bearer {PREFIX}{}", "/".repeat(ENCODED_LEN)),
            format!("Bearer {}", token.to_uppercase()),
            "Bearer intake_".into(),
        ] {
            assert_eq!(from_header(header.as_bytes()), None, "{header}");
        }
        assert_eq!(from_header(b"Bearer \xff\xfe"), None);
    }
}
