//! Names of collections and subjects, checked once where they enter ("parse, don't validate"): a value of
//! these types is a valid name, so nothing further in has to check again.

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("1-64 characters: letters, digits, . _ -")]
    Collection,
    #[error("1-256 characters, not blank, no control or invisible formatting characters")]
    Subject,
}

/// A collection's name: 1–64 ASCII letters, digits, `.`, `_`, `-` (it appears in URLs as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            // `.` and `..` would read as path steps in a URL.
            && !s.chars().all(|c| c == '.');
        ok.then(|| CollectionName(s.to_string())).ok_or(NameError::Collection)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subject's name, unique within its collection, in Unicode normal form C (so that look-alikes composed
/// differently are one name): 1–256 characters, not blank, no control characters and no invisible
/// formatting characters (zero-width space, word joiner, byte-order mark, soft hyphen, bidirectional
/// controls). Zero-width joiners, which some scripts need inside names, are allowed beside visible letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectName(String);

impl SubjectName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = normalize(s);
        let visible = s.chars().any(|c| !c.is_whitespace() && !matches!(c, '\u{200C}' | '\u{200D}'));
        let ok = visible && s.chars().count() <= 256 && !s.chars().any(|c| c.is_control() || is_invisible_format(c));
        ok.then_some(SubjectName(s)).ok_or(NameError::Subject)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subject name as stored and looked up: Unicode normal form C.
pub fn normalize(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfc().collect()
}

/// Formatting characters that show nothing and would make two names look alike.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_where_they_are_parsed() {
        assert!(CollectionName::parse("staff-2026.v1").is_ok());
        for bad in ["", "a b", "ü", ".", "..", "...", &"x".repeat(65)] {
            assert_eq!(CollectionName::parse(bad), Err(NameError::Collection), "{bad:?}");
        }
        assert!(SubjectName::parse("Zoë O'Neil").is_ok());
        for bad in [
            "",
            "   ",
            "a\nb",
            &"x".repeat(257),
            "\u{200B}",
            "\u{200B}\u{200B}",
            "ann\u{200B}",
            "\u{FEFF}bob",
            "\u{202E}eve",
        ] {
            assert_eq!(SubjectName::parse(bad), Err(NameError::Subject), "{bad:?}");
        }
        // 256 characters of two bytes each are fine; the limit is in characters.
        assert!(SubjectName::parse(&"é".repeat(256)).is_ok());
        // Composed and decomposed spellings are one name.
        let (nfc, nfd) = (SubjectName::parse("Zo\u{00EB}").unwrap(), SubjectName::parse("Zoe\u{0308}").unwrap());
        assert_eq!(nfc, nfd);
        assert_eq!(nfd.as_str(), "Zo\u{00EB}");
        // A zero-width non-joiner inside a Persian name stays.
        assert!(SubjectName::parse("\u{0645}\u{06CC}\u{200C}\u{0631}").is_ok());
    }
}
