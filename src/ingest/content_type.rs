//! The content type of an upload: declared by the client, or sniffed from its first bytes.

use mime::Mime;

use crate::base::error::ApiError;

/// Enough leading bytes for every signature `infer` knows that matters here.
const HEAD_BYTES: usize = 8 * 1024;

/// `upload.allowed_content_types`: exact types or `type/*`; empty allows everything. Narrowed
/// (an upload link's own list), a type must be on every list that is not empty.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<Vec<String>>);

impl AllowList {
    pub fn new(entries: &[String]) -> Self {
        Self(vec![Self::entries(entries)])
    }

    /// What this list and `entries` both allow.
    pub fn narrowed(&self, entries: &[String]) -> Self {
        let mut narrowed = self.clone();
        narrowed.0.push(Self::entries(entries));
        narrowed
    }

    fn entries(entries: &[String]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect()
    }

    pub fn check(&self, content_type: &str) -> Result<(), ApiError> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let allowed = self.0.iter().all(|list| {
            list.is_empty()
                || list.iter().any(|entry| match entry.strip_suffix("/*") {
                    Some(top) => essence.split('/').next() == Some(top),
                    None => *entry == essence,
                })
        });
        if allowed {
            Ok(())
        } else {
            Err(ApiError::UnsupportedMediaType(essence))
        }
    }
}

/// Decides a part's content type while its bytes stream past.
pub struct Detector {
    declared: Option<String>,
    head: Vec<u8>,
}

impl Detector {
    /// A declared type other than `application/octet-stream` is taken as is and checked at once;
    /// one that names no concrete type (`image/`, `image/*`) counts as undeclared.
    pub fn new(declared: Option<&Mime>, allow: &AllowList) -> Result<Self, ApiError> {
        let declared = declared
            .filter(|m| *m != &mime::APPLICATION_OCTET_STREAM && is_concrete(m))
            .map(ToString::to_string);
        if let Some(declared) = &declared {
            allow.check(declared)?;
        }
        Ok(Self {
            declared,
            head: Vec::new(),
        })
    }

    /// Keeps the first bytes while the type is still undecided.
    pub fn observe(&mut self, chunk: &[u8]) {
        if self.declared.is_none() && self.head.len() < HEAD_BYTES {
            let take = chunk.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
    }

    /// True once enough bytes are in to sniff: the caller may check early.
    pub fn is_ready(&self) -> bool {
        self.declared.is_some() || self.head.len() >= HEAD_BYTES
    }

    pub fn content_type(&self) -> String {
        match &self.declared {
            Some(declared) => declared.clone(),
            None => sniff(&self.head).to_owned(),
        }
    }
}

fn is_concrete(mime: &Mime) -> bool {
    let token = |part: &str| !part.is_empty() && part != "*";
    token(mime.type_().as_str()) && token(mime.subtype().as_str())
}

fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if looks_like_text(head) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// UTF-8 (a character cut at the end of the head is fine) without control characters other
/// than whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).expect("checked prefix")
        }
        Err(_) => return false,
    };
    !head.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_known_signatures_text_and_binary() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("héllo\n".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }

    #[test]
    fn a_declared_type_without_a_concrete_subtype_is_sniffed() {
        let allow = AllowList::new(&["image/*".into()]);
        for declared in ["image/", "image/*", "*/*"] {
            let parsed = declared.parse::<Mime>().ok();
            let detector = Detector::new(parsed.as_ref(), &allow).unwrap();
            assert!(!detector.is_ready(), "{declared}");
        }
        let png = "image/png".parse::<Mime>().unwrap();
        assert!(Detector::new(Some(&png), &allow).unwrap().is_ready());
    }

    #[test]
    fn allow_list_matches_exact_types_and_wildcards() {
        let allow = AllowList::new(&["image/*".into(), "application/pdf".into()]);
        assert!(allow.check("image/png").is_ok());
        assert!(allow.check("application/pdf; x=1").is_ok());
        assert!(allow.check("text/plain").is_err());
        assert!(AllowList::new(&[]).check("anything/else").is_ok());
        let narrowed = allow.narrowed(&["image/png".into(), "text/plain".into()]);
        assert!(narrowed.check("image/png").is_ok());
        assert!(narrowed.check("image/gif").is_err());
        assert!(narrowed.check("text/plain").is_err());
        assert!(AllowList::new(&[]).narrowed(&[]).check("a/b").is_ok());
    }
}
