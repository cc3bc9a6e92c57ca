//! Validation of untrusted identifiers (device, account, region, clip ids) before they are
//! used in an object key or a path. Strict allow-lists: nothing that could traverse (`..`,
//! `/`, `\`), hide (leading `.`), smuggle (NUL, control characters, non-ASCII look-alikes) or
//! overflow (over 64 bytes).

fn check(kind: &str, s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{kind} id is empty"));
    }
    if s.len() > max {
        return Err(format!("{kind} id is longer than {max} bytes"));
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{kind} id {:?} contains {:?}, which is not allowed",
            s.escape_debug().to_string(),
            c
        ));
    }
    if s.starts_with('.') || s.starts_with('-') || s.contains("..") {
        return Err(format!(
            "{kind} id {:?} may not start with '.' or '-' or contain '..'",
            s
        ));
    }
    Ok(())
}

/// Device ids: ASCII letters, digits, `.`, `_`, `-`; 1..64 bytes.
pub fn device(s: &str) -> Result<(), String> {
    check("device", s, 64, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Account ids: as device ids.
pub fn account(s: &str) -> Result<(), String> {
    check("account", s, 64, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Region names: `[a-z0-9-]+`, 1..32 bytes.
pub fn region(s: &str) -> Result<(), String> {
    check("region", s, 32, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })
}

/// Clip ids: 64 lower-case hex digits (the sha256 of the input).
pub fn clip(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(format!("clip id {:?} is not 64 lower-case hex digits", s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traversal_and_injection_are_refused() {
        for bad in [
            "",
            "../x",
            "..",
            "a/b",
            "a\\b",
            "/etc/passwd",
            "a\0b",
            ".hidden",
            "-rf",
            "cam 1",
            "cаm-1",
            &"x".repeat(65),
            "a..b",
            "a\nb",
        ] {
            assert!(device(bad).is_err(), "{bad:?} accepted");
        }
        assert!(device("cam-0042").is_ok() && device("Door_Station.7").is_ok());
        assert!(region("eu").is_ok() && region("us-east-1").is_ok());
        assert!(region("EU").is_err() && region("eu_1").is_err());
        assert!(clip(&"a".repeat(64)).is_ok() && clip(&"A".repeat(64)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]
        #[test]
        fn accepted_ids_never_contain_path_syntax(
            s in prop_oneof![
                "\\PC{0,80}",
                // Mostly allowed characters, mixed with path syntax, NUL and look-alikes.
                "[a-zA-Z0-9._-]{0,30}([./\\\\]|\\.\\.|\\x00|а|／|․)?[a-zA-Z0-9._-]{0,40}",
            ]
        ) {
            if device(&s).is_ok() {
                prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains("..") && !s.contains('\0'));
                prop_assert!(!s.starts_with('.') && s.len() <= 64 && s.is_ascii());
                let p = std::path::Path::new("/base").join(&s);
                prop_assert!(p.starts_with("/base") && p.components().count() == 3);
            }
        }
    }
}
