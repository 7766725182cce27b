//! The client's file name, made safe to display. It is never used as a path.

use actix_web::http::header::{Charset, ContentDisposition};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Bytes kept of a name: the common filesystem limit, so a name can be saved back as is.
const MAX_BYTES: usize = 255;
/// An extension longer than this is not worth keeping when a long name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;
const UNNAMED: &str = "unnamed";

/// The name a part declares (`filename*` preferred over `filename`), made safe.
pub fn from_disposition(disposition: Option<&ContentDisposition>) -> String {
    let declared = disposition.and_then(|cd| {
        cd.get_filename_ext()
            .and_then(|ext| match &ext.charset {
                Charset::Ext(name) if name.eq_ignore_ascii_case("utf-8") => {
                    String::from_utf8(ext.value.clone()).ok()
                }
                // Each ISO-8859-1 byte is the code point of the same number.
                Charset::Iso_8859_1 => Some(ext.value.iter().copied().map(char::from).collect()),
                _ => None,
            })
            .or_else(|| cd.get_filename().map(str::to_owned))
    });
    sanitize(declared.as_deref().unwrap_or(""))
}

/// Keeps the last path component, drops control, format (invisible, bidirectional) and line or
/// paragraph separator characters, trims blanks and dots from the ends and bounds the length,
/// keeping a short extension.
pub fn sanitize(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !is_unsafe(*c)).collect();
    let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');
    if trimmed.is_empty() {
        return UNNAMED.to_owned();
    }
    shorten(trimmed)
}

fn is_unsafe(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

fn shorten(name: &str) -> String {
    if name.len() <= MAX_BYTES {
        return name.to_owned();
    }
    let extension = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= MAX_EXTENSION_BYTES)
        .unwrap_or("");
    let mut stem_end = MAX_BYTES - extension.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{extension}", &name[..stem_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_are_dropped() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize(r"C:\Users\me\report.pdf"), "report.pdf");
        assert_eq!(sanitize("dir/"), UNNAMED);
        assert_eq!(sanitize(".."), UNNAMED);
    }

    #[test]
    fn control_and_bidi_characters_are_dropped() {
        assert_eq!(sanitize("a\0b\r\nc\td\u{7f}.txt"), "abcd.txt");
        assert_eq!(sanitize("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
    }

    #[test]
    fn invisible_and_line_breaking_characters_are_dropped() {
        let raw = "a\u{061C}b\u{200B}c\u{FEFF}d\u{2028}e\u{2029}f\u{00AD}g.txt";
        assert_eq!(sanitize(raw), "abcdefg.txt");
    }

    #[test]
    fn non_ascii_is_kept() {
        assert_eq!(sanitize("résumé 日本語.txt"), "résumé 日本語.txt");
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let name = format!("{}.tar.gz", "é".repeat(500));
        let safe = sanitize(&name);
        assert!(safe.len() <= MAX_BYTES);
        assert!(safe.ends_with(".gz"));
        assert!(safe.starts_with('é'));
    }
}
