//! Names of collections and subjects, checked once where they enter ("parse, don't validate"): a value of
//! these types is a valid name, so nothing further in has to check again.

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("1-64 characters: letters, digits, . _ -")]
    Collection,
    #[error("1-256 characters, not blank, no control characters")]
    Subject,
}

/// A collection's name: 1–64 ASCII letters, digits, `.`, `_`, `-` (it appears in URLs as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        ok.then(|| CollectionName(s.to_string())).ok_or(NameError::Collection)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subject's name, unique within its collection: not blank, at most 256 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectName(String);

impl SubjectName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.trim().is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        ok.then(|| SubjectName(s.to_string())).ok_or(NameError::Subject)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_where_they_are_parsed() {
        assert!(CollectionName::parse("staff-2026.v1").is_ok());
        for bad in ["", "a b", "ü", &"x".repeat(65)] {
            assert_eq!(CollectionName::parse(bad), Err(NameError::Collection), "{bad:?}");
        }
        assert!(SubjectName::parse("Zoë O'Neil").is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(257)] {
            assert_eq!(SubjectName::parse(bad), Err(NameError::Subject), "{bad:?}");
        }
    }
}
