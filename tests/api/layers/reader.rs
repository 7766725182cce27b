//! Reads the module tree and the paths each file names, as far as the layout test needs: every
//! file's module path, and each `crate::`, `super::` and `self::` path resolved to the deepest
//! module file it names.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Every `.rs` file under `dir` by its module path; `main.rs` is another crate.
pub fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("src/ is readable").path();
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") || path == root.join("main.rs") {
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .expect("under src/")
            .with_extension("");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        let text = fs::read_to_string(&path).expect("a source file is UTF-8");
        files.insert(parts.join("::"), text);
    }
}

/// The code without comments, strings and character literals (which may hold `crate::`).
pub fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !is_ident(chars.get(i.wrapping_sub(1)))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime (kept).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        i += 1;
        out.push(match c {
            ':' if chars.get(i) == Some(&':') => {
                i += 1;
                Token::Path
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            ';' => Token::Semi,
            c if c.is_whitespace() => continue,
            _ => Token::Other,
        });
    }
    out
}

/// Every path the code names that starts at `crate`, `super` or `self`, with the inline module
/// (`mod tests { … }`) it is named in, relative to the file's module.
pub fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    // The inline modules open at this point, with the brace depth each was opened at.
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope: Vec<String> = scopes.iter().map(|(name, _)| name.clone()).collect();
        match &tokens[i] {
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Open)) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    scopes.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Token::Ident(word) if word == "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|token| *token == Token::Semi)
                    .map_or(tokens.len(), |n| i + n);
                for path in use_tree(&tokens[i + 1..end]) {
                    if matches!(
                        path.first().map(String::as_str),
                        Some("crate" | "super" | "self")
                    ) {
                        found.push((scope.clone(), path));
                    }
                }
                i = end;
                continue;
            }
            Token::Ident(word)
                if matches!(word.as_str(), "crate" | "super")
                    && tokens.get(i + 1) == Some(&Token::Path)
                    && i.checked_sub(1)
                        .is_none_or(|before| tokens[before] != Token::Path) =>
            {
                let mut path = vec![word.clone()];
                let mut j = i + 1;
                while tokens.get(j) == Some(&Token::Path) {
                    match tokens.get(j + 1) {
                        Some(Token::Ident(next)) => path.push(next.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                found.push((scope, path));
                i = j;
                continue;
            }
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if scopes.last().is_some_and(|(_, at)| *at == depth) {
                    scopes.pop();
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The paths a `use` tree names: `a::{b, c::{d}}` → `a::b`, `a::c::d`.
fn use_tree(tokens: &[Token]) -> Vec<Vec<String>> {
    fn walk(tokens: &[Token], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *at < tokens.len() {
            match &tokens[*at] {
                Token::Ident(word) if word == "as" => {
                    *at += 2;
                }
                Token::Ident(word) => {
                    path.push(word.clone());
                    *at += 1;
                }
                Token::Path => *at += 1,
                Token::Open => {
                    *at += 1;
                    loop {
                        walk(tokens, at, &path, out);
                        match tokens.get(*at) {
                            Some(Token::Comma) => *at += 1,
                            Some(Token::Close) => {
                                *at += 1;
                                return;
                            }
                            _ => return,
                        }
                        if tokens.get(*at) == Some(&Token::Close) {
                            *at += 1;
                            return;
                        }
                    }
                }
                Token::Comma | Token::Close => break,
                _ => *at += 1,
            }
        }
        out.push(path);
    }
    let mut out = Vec::new();
    let start = tokens
        .iter()
        .position(|token| matches!(token, Token::Ident(_) | Token::Open))
        .unwrap_or(tokens.len());
    walk(tokens, &mut start.clone(), &[], &mut out);
    out
}

pub fn join(module: &str, scope: &[String]) -> Vec<String> {
    let mut parts: Vec<String> = module
        .split("::")
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect();
    parts.extend(scope.iter().cloned());
    parts
}

/// The deepest module file a path names, read from `inner` (the module it is written in, inline
/// modules included).
pub fn resolve(modules: &BTreeSet<String>, inner: &[String], path: &[String]) -> Option<String> {
    let mut at: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self" | "super") => {
            at = inner.to_vec();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "self" => {}
                    "super" => {
                        at.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    // From the (possibly inline) starting module, the file module that holds it.
    while !modules.contains(&at.join("::")) {
        at.pop()?;
    }
    for part in rest {
        at.push(part.clone());
        if !modules.contains(&at.join("::")) {
            at.pop();
            break;
        }
    }
    Some(at.join("::"))
}
