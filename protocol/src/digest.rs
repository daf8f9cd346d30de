//! The digest that binds what the operator wrote to what the executor runs: the operator puts
//! the SHA-256 of a script or HostGroup spec on the executor's command line (in the pod spec,
//! which only the operator writes), and the executor refuses a file whose bytes differ — a
//! ConfigMap replaced or swapped under the operator's name runs nothing.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is a lowercase hex SHA-256 as `sha256_hex` writes it.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `bytes` (read from `what`) against the `expected` digest: `Err` says what differs.
pub fn verify(what: &str, bytes: &[u8], expected: &str) -> Result<(), String> {
    if !is_sha256_hex(expected) {
        return Err(format!("the expected SHA-256 of {what} is not 64 lowercase hex digits: {expected:?}"));
    }
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "{what} is not the one the operator wrote (SHA-256 {actual}, expected {expected}): its ConfigMap was replaced or changed; nothing was run or changed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_and_a_changed_byte_is_refused() {
        // The SHA-256 test vector of "abc" (FIPS 180-2).
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(verify("the script", b"abc", abc), Ok(()));
        let refused = verify("the script", b"abd", abc).unwrap_err();
        assert!(refused.starts_with("the script is not the one the operator wrote"), "{refused}");
        assert!(verify("the script", b"abc", "ABC").unwrap_err().contains("not 64 lowercase hex digits"));
    }
}
