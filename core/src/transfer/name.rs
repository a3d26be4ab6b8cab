//! Received file names: what a sender proposes is a claim, checked here
//! before anything touches the disk. The receiver never relies on the
//! sender's own checks.

use std::fmt;

/// Why a proposed file name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or a component is).
    #[error("empty name")]
    Empty,
    /// Longer than `TransferConfig::max_name_len` bytes.
    #[error("name of {len} bytes exceeds {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Starts with `/` or `\`, or a drive prefix such as `C:`.
    #[error("absolute path")]
    Absolute,
    /// A `.` or `..` component.
    #[error("'.' or '..' component")]
    DotComponent,
    /// A separator while subdirectories are not allowed, or a backslash.
    #[error("path separator")]
    Separator,
    /// NUL, another control character, or `:`.
    #[error("control character or ':'")]
    BadChar,
    /// A reserved device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9).
    #[error("reserved device name")]
    Reserved,
    /// Ends with a dot or a space.
    #[error("trailing dot or space")]
    Trailing,
    /// Ends like the receiver's own partial files (`.part`, `.part.meta`).
    #[error("name of a partial file")]
    PartialSuffix,
}

/// Suffixes the receiver uses for its own files next to the final one.
pub(crate) const PART: &str = ".part";
pub(crate) const META: &str = ".part.meta";
/// Room the partial and sidecar names need beyond the final name.
pub(crate) const SUFFIX_ROOM: usize = ".part.meta.tmp".len();

/// Checks a proposed name; returns it unchanged if it is safe to join to
/// the destination directory. With `subdirs`, `/`-separated components are
/// allowed, each checked the same way.
///
/// ```
/// use estafeta_core::transfer::{sanitize_name, NameError};
/// assert_eq!(sanitize_name("report.pdf", 255, false), Ok("report.pdf".to_string()));
/// assert_eq!(sanitize_name("../x", 255, false), Err(NameError::Separator));
/// assert_eq!(sanitize_name("a/b", 255, true), Ok("a/b".to_string()));
/// ```
pub fn sanitize_name(name: &str, max_len: usize, subdirs: bool) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_len {
        return Err(NameError::TooLong { len: name.len(), max: max_len });
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(NameError::Absolute);
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(NameError::Absolute);
    }
    if name.chars().any(|c| c.is_control() || c == ':') {
        return Err(NameError::BadChar);
    }
    if name.contains('\\') {
        return Err(NameError::Separator);
    }
    if name.contains('/') && !subdirs {
        // `..` inside a path is reported as what it is.
        if name.split('/').any(|c| c == ".." || c == ".") {
            return Err(NameError::Separator);
        }
        return Err(NameError::Separator);
    }
    for part in name.split('/') {
        check_component(part)?;
    }
    if name.ends_with(PART) || name.ends_with(META) || name.ends_with(".part.meta.tmp") {
        return Err(NameError::PartialSuffix);
    }
    Ok(name.to_string())
}

fn check_component(c: &str) -> Result<(), NameError> {
    if c.is_empty() {
        return Err(NameError::Empty);
    }
    if c == "." || c == ".." {
        return Err(NameError::DotComponent);
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Err(NameError::Trailing);
    }
    let stem = c.split('.').next().unwrap_or(c).trim_end().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0');
    if reserved {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// A name made safe to print: control characters and quotes escaped,
/// shortened to 64 characters (for events and logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == 64 {
                return write!(f, "…");
            }
            write!(f, "{}", c.escape_debug())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str) -> Result<String, NameError> {
        sanitize_name(name, 240, false)
    }

    #[test]
    fn plain_names_pass_unchanged() {
        assert_eq!(check("model.bin"), Ok("model.bin".into()));
        assert_eq!(check(".hidden"), Ok(".hidden".into()));
        assert_eq!(check("ünïcödé файл.txt"), Ok("ünïcödé файл.txt".into()));
        assert_eq!(check("console.log"), Ok("console.log".into()), "a reserved stem only when whole");
    }

    #[test]
    fn traversal_is_refused() {
        assert_eq!(check("../x"), Err(NameError::Separator));
        assert_eq!(check("a/../../x"), Err(NameError::Separator));
        assert_eq!(check(".."), Err(NameError::DotComponent));
        assert_eq!(check("."), Err(NameError::DotComponent));
        assert_eq!(check("..\\x"), Err(NameError::Separator));
        // With subdirectories allowed, `..` is still refused.
        assert_eq!(sanitize_name("a/../../x", 240, true), Err(NameError::DotComponent));
        assert_eq!(sanitize_name("a//b", 240, true), Err(NameError::Empty));
        assert_eq!(sanitize_name("a/b/", 240, true), Err(NameError::Empty));
    }

    #[test]
    fn absolute_paths_are_refused() {
        assert_eq!(check("/etc/x"), Err(NameError::Absolute));
        assert_eq!(sanitize_name("/etc/x", 240, true), Err(NameError::Absolute));
        assert_eq!(check("\\\\server\\share"), Err(NameError::Absolute));
        assert_eq!(check("C:x"), Err(NameError::Absolute));
        assert_eq!(check("D:\\x"), Err(NameError::Absolute));
    }

    #[test]
    fn device_names_are_refused_in_any_case() {
        for n in ["con", "CON", "Con.txt", "nul", "aux.tar.gz", "prn", "com1", "LPT9.log"] {
            assert_eq!(check(n), Err(NameError::Reserved), "{n}");
        }
        assert_eq!(check("com0"), Ok("com0".into()));
        assert_eq!(check("com10"), Ok("com10".into()));
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        assert_eq!(check("a\0b"), Err(NameError::BadChar));
        assert_eq!(check("a\nb"), Err(NameError::BadChar));
        assert_eq!(check("\u{1b}[2Jx"), Err(NameError::BadChar));
        assert_eq!(check("file.txt:stream"), Err(NameError::BadChar));
    }

    #[test]
    fn long_names_are_refused() {
        let long = "a".repeat(10 * 1024);
        assert_eq!(check(&long), Err(NameError::TooLong { len: 10 * 1024, max: 240 }));
        assert!(check(&"a".repeat(240)).is_ok());
    }

    #[test]
    fn trailing_dots_spaces_and_partial_suffixes_are_refused() {
        assert_eq!(check("x."), Err(NameError::Trailing));
        assert_eq!(check("x "), Err(NameError::Trailing));
        assert_eq!(check(""), Err(NameError::Empty));
        assert_eq!(check("x.part"), Err(NameError::PartialSuffix));
        assert_eq!(check("x.part.meta"), Err(NameError::PartialSuffix));
    }

    #[test]
    fn escaped_names_print_safely() {
        assert_eq!(Escaped("a\u{1b}[2J\nb").to_string(), "a\\u{1b}[2J\\nb");
        assert!(Escaped(&"x".repeat(1000)).to_string().chars().count() <= 65);
    }
}
