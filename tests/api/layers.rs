//! The house's layout, read from the code's own imports (docs/architecture.md): the modules of
//! `src/` import each other in no circle, and each import points down the layers. Paths are
//! read as the compiler resolves them: `crate::…`, `super::…` and `self::…`, in `use` lines and
//! in code, each resolved to the deepest module file it names. A module may use its own
//! children; a child using its parent counts.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The layers, top first; a module belongs to the first entry whose prefix it has. An import
/// may point to a lower layer, or within its own area (the entry's prefix) — never up, and
/// never sideways into another HTTP area.
const LAYERS: &[(&str, &[&str])] = &[
    ("wiring", &["", "startup", "routes", "server", "cli"]),
    (
        "HTTP areas",
        &[
            "api::account",
            "api::checkout",
            "api::files",
            "api::lessons",
            "api::ops",
            "api::page",
            "api::tus",
            "api::uploads",
        ],
    ),
    ("HTTP kit", &["api"]),
    (
        "shared services",
        &["access", "catalog", "ingest", "resumable", "sweep"],
    ),
    ("storage", &["storage"]),
    ("base", &["base"]),
];

#[test]
fn no_module_imports_another_in_a_circle() {
    let graph = Graph::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let circles = graph.circles();
    let mut told = String::new();
    for circle in &circles {
        told.push_str(&format!("circle: {}\n", circle.join(", ")));
        for from in circle {
            for to in graph.edges[from].iter().filter(|to| circle.contains(to)) {
                told.push_str(&format!("  {from} → {to}\n"));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle, and the imports inside it:\n{told}"
    );
}

#[test]
fn every_import_points_down_the_layers() {
    let graph = Graph::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let mut upward = Vec::new();
    for (from, targets) in &graph.edges {
        let (from_layer, from_area) = layer_of(from);
        for to in targets {
            let (to_layer, to_area) = layer_of(to);
            let sideways_in_areas = from_layer == 1 && to_layer == 1 && from_area != to_area;
            if to_layer < from_layer || sideways_in_areas {
                upward.push(format!(
                    "  {from} ({}) → {to} ({})",
                    LAYERS[from_layer].0, LAYERS[to_layer].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up a layer, or across HTTP areas:\n{}",
        upward.join("\n")
    );
}

/// The layer's index and the area's prefix.
fn layer_of(module: &str) -> (usize, &'static str) {
    for (index, (_, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in *prefixes {
            let root = prefix.is_empty() && module.is_empty();
            if root || (!prefix.is_empty() && is_within(module, prefix)) {
                return (index, prefix);
            }
        }
    }
    panic!("module {module} is in no layer: add it to LAYERS and docs/architecture.md")
}

fn is_within(module: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || module == ancestor
        || module
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// Modules (by path, `a::b`; the crate's root is ``) and the modules each one imports.
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        collect(src, src, &mut files);
        let modules: BTreeSet<String> = files.keys().cloned().collect();
        let mut edges = BTreeMap::new();
        for (module, text) in &files {
            let mut targets = BTreeSet::new();
            for (scope, path) in paths(&strip(text)) {
                let inner = join(module, &scope);
                if let Some(target) = resolve(&modules, &inner, &path)
                    && !is_within(&target, module)
                {
                    targets.insert(target);
                }
            }
            edges.insert(module.clone(), targets);
        }
        Self { edges }
    }

    /// Each strongly connected group of more than one module (Tarjan's algorithm).
    fn circles(&self) -> Vec<Vec<String>> {
        struct Walk<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            found: Vec<Vec<String>>,
        }
        impl<'a> Walk<'a> {
            fn visit(&mut self, node: &'a str) {
                let n = self.index.len();
                self.index.insert(node, n);
                self.low.insert(node, n);
                self.stack.push(node);
                self.on_stack.insert(node);
                for next in self.graph.edges.get(node).into_iter().flatten() {
                    let next = next.as_str();
                    if !self.index.contains_key(next) {
                        self.visit(next);
                        let low = self.low[node].min(self.low[next]);
                        self.low.insert(node, low);
                    } else if self.on_stack.contains(next) {
                        let low = self.low[node].min(self.index[next]);
                        self.low.insert(node, low);
                    }
                }
                if self.low[node] == self.index[node] {
                    let mut group = Vec::new();
                    while let Some(member) = self.stack.pop() {
                        self.on_stack.remove(member);
                        group.push(member.to_owned());
                        if member == node {
                            break;
                        }
                    }
                    if group.len() > 1 {
                        group.sort();
                        self.found.push(group);
                    }
                }
            }
        }
        let mut walk = Walk {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for node in self.edges.keys() {
            if !walk.index.contains_key(node.as_str()) {
                walk.visit(node);
            }
        }
        walk.found
    }
}

/// Every `.rs` file under `dir` by its module path; `main.rs` is another crate.
fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
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
fn strip(text: &str) -> String {
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
fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
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

fn join(module: &str, scope: &[String]) -> Vec<String> {
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
fn resolve(modules: &BTreeSet<String>, inner: &[String], path: &[String]) -> Option<String> {
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
