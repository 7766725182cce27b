//! The house's layout, read from the code's own imports (docs/architecture.md): the modules of
//! `src/` import each other in no circle, and each import points down the layers. Paths are
//! read as the compiler resolves them: `crate::…`, `super::…` and `self::…`, in `use` lines and
//! in code, each resolved to the deepest module file it names. A module may use its own
//! children; a child using its parent counts.

mod reader;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use self::reader::{collect, join, paths, resolve, strip};

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
            "api::resumable",
            "api::uploads",
        ],
    ),
    ("HTTP kit", &["api"]),
    (
        "shared services",
        &[
            "access",
            "catalog",
            "events",
            "ingest",
            "resumable",
            "sweep",
        ],
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

    /// The modules each one reaches through its imports, itself excluded unless round a circle.
    fn reaches(&self, from: &str) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&str> = vec![from];
        while let Some(module) = next.pop() {
            for to in self.edges.get(module).into_iter().flatten() {
                if seen.insert(to.as_str()) {
                    next.push(to);
                }
            }
        }
        seen
    }

    /// Each group of modules that reach one another (a circle, or several sharing modules).
    fn circles(&self) -> Vec<Vec<String>> {
        let reach: BTreeMap<&str, BTreeSet<&str>> = self
            .edges
            .keys()
            .map(|module| (module.as_str(), self.reaches(module)))
            .collect();
        let mut circles: Vec<Vec<String>> = Vec::new();
        for (module, reached) in &reach {
            if !reached.contains(module) || circles.iter().flatten().any(|m| m == module) {
                continue;
            }
            let circle = reached
                .iter()
                .filter(|other| reach[**other].contains(module))
                .map(|other| (*other).to_owned())
                .collect();
            circles.push(circle);
        }
        circles
    }
}
