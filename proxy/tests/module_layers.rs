//! The proxy's top-level modules form no cycle and respect the layering written in the
//! crate's top comment (`src/lib.rs`, "Layers"): a module uses modules of its own layer or a
//! lower one, never a higher one, and every module is placed in a layer.
//!
//! The graph is read from the source text: every `crate::name` in a module's files is an
//! edge to the top-level module `name`. Unit-test code does not count (`*_tests.rs` files and
//! a trailing `#[cfg(test)] mod tests { … }`), doc links and comments do: a doc link is a
//! dependency of the documentation, and a lower module names a higher one in prose instead.
//! A failure names the modules and the file and reference behind each edge, so the fix (move
//! the item down, or reword the link) is one step away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module's use of another: where, and the reference as written.
#[derive(Clone, Debug)]
struct Reference {
    file: String,
    text: String,
}

/// module → module it uses → the references behind that edge.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Reference>>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}"));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("listing {dir:?}: {e}"))
            .path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its trailing unit-test module, which may use anything.
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if let Some(rest) = rest.strip_prefix("mod tests")
            && rest.trim_start().starts_with('{')
        {
            return &text[..start];
        }
        from = start + 1;
    }
    text
}

/// Every `crate::name…` path in `text`: the top-level module `name` and the path as written.
fn crate_references(text: &str) -> Vec<(String, String)> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        // `strait_crate::x` or `my_crate::x` is not this crate.
        if text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let path: String = text[start..]
            .chars()
            .take_while(|&c| is_path_char(c))
            .collect();
        let path = path.trim_end_matches(':').to_owned();
        let module: String = text[from..]
            .chars()
            .take_while(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            .collect();
        if !module.is_empty() {
            found.push((module, path));
        }
    }
    found
}

/// The top-level module a file belongs to, or `None` for the crate roots and test files.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let name = relative.file_name()?.to_str()?;
    if name.ends_with("_tests.rs") {
        return None;
    }
    let first = relative.components().next()?.as_os_str().to_str()?;
    let top = first.strip_suffix(".rs").unwrap_or(first);
    (top != "lib" && top != "main").then(|| top.to_owned())
}

fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let Some(top) = top_module(src, &file) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {file:?}: {e}"));
        let shown = file
            .strip_prefix(src)
            .unwrap_or(&file)
            .display()
            .to_string();
        let uses = graph.entry(top.clone()).or_default();
        for (module, path) in crate_references(without_tests(&text)) {
            if module != top {
                uses.entry(module).or_default().push(Reference {
                    file: shown.clone(),
                    text: path,
                });
            }
        }
    }
    graph
}

/// One cycle per strongly connected component of more than one module, each as the modules
/// in order (the first is repeated at the end), with every module of its component.
fn cycles(graph: &Graph) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let edges = |m: &str| -> Vec<String> {
        graph
            .get(m)
            .map(|uses| uses.keys().cloned().collect())
            .unwrap_or_default()
    };
    // Modules that reach each other are in one component; small graphs, so the plain
    // reachability closure is clear enough.
    let nodes: BTreeSet<String> = graph
        .iter()
        .flat_map(|(m, uses)| std::iter::once(m.clone()).chain(uses.keys().cloned()))
        .collect();
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = edges(from);
        while let Some(m) = todo.pop() {
            if seen.insert(m.clone()) {
                todo.extend(edges(&m));
            }
        }
        seen
    };
    let reaches: BTreeMap<String, BTreeSet<String>> =
        nodes.iter().map(|m| (m.clone(), reach(m))).collect();
    let mut placed = BTreeSet::new();
    let mut found = Vec::new();
    for start in &nodes {
        if placed.contains(start) || !reaches[start].contains(start) {
            continue;
        }
        let component: BTreeSet<String> = reaches[start]
            .iter()
            .filter(|m| reaches[*m].contains(start))
            .cloned()
            .collect();
        placed.extend(component.iter().cloned());
        // A shortest way back to `start` inside the component, by breadth-first search.
        let mut back: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        'search: while let Some(m) = queue.pop_front() {
            for next in edges(&m) {
                if !component.contains(&next) {
                    continue;
                }
                if &next == start {
                    back.insert(format!("{start}\0end"), m.clone());
                    break 'search;
                }
                if !back.contains_key(&next) {
                    back.insert(next.clone(), m.clone());
                    queue.push_back(next);
                }
            }
        }
        let mut cycle = vec![start.clone()];
        let mut at = back[&format!("{start}\0end")].clone();
        while &at != start {
            cycle.push(at.clone());
            at = back[&at].clone();
        }
        cycle.push(start.clone());
        cycle.reverse();
        found.push((cycle, component));
    }
    found
}

fn explain_edge(graph: &Graph, from: &str, to: &str) -> String {
    let references = &graph[from][to];
    let shown: Vec<String> = references
        .iter()
        .take(3)
        .map(|r| format!("{}: {}", r.file, r.text))
        .collect();
    format!("  {from} -> {to}: {}", shown.join(", "))
}

/// The layers of the crate's top comment, lowest first: the backticked names before the
/// first ": " of each numbered item under "## Layers".
fn documented_layers(lib: &str) -> Vec<Vec<String>> {
    let mut items: Vec<String> = Vec::new();
    let mut in_section = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with("## ") {
            in_section = doc == "## Layers";
            continue;
        }
        if !in_section {
            continue;
        }
        let numbered = doc
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if let Some((_, rest)) = numbered {
            items.push(rest.to_owned());
        } else if doc.starts_with("   ")
            && let Some(item) = items.last_mut()
        {
            item.push(' ');
            item.push_str(doc.trim());
        }
    }
    items
        .iter()
        .map(|item| {
            let head = item
                .split_once(": ")
                .map_or(item.as_str(), |(head, _)| head);
            head.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn no_top_level_modules_form_a_cycle() {
    let graph = graph_of(&src_dir());
    let found = cycles(&graph);
    let mut report = String::new();
    for (cycle, component) in &found {
        report.push_str(&format!(
            "cycle: {}\n(modules that all reach each other: {component:?})\n",
            cycle.join(" -> ")
        ));
        for pair in cycle.windows(2) {
            report.push_str(&explain_edge(&graph, &pair[0], &pair[1]));
            report.push('\n');
        }
    }
    assert!(
        found.is_empty(),
        "the proxy's top-level modules form cycles; move the shared item to a lower module \
         (see the layering in src/lib.rs) or reword the doc link as prose:\n{report}"
    );
}

/// The workspace's other library crates are held to the same rule (no cycles; they document
/// no layers): the control plane, the identity crate, the API crate and the CLI.
#[test]
fn no_other_crate_of_the_workspace_has_module_cycles() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["control-plane", "identity", "proto", "cli"] {
        let graph = graph_of(&workspace.join(krate).join("src"));
        let found = cycles(&graph);
        let report: Vec<String> = found
            .iter()
            .map(|(cycle, _)| {
                let edges: Vec<String> = cycle
                    .windows(2)
                    .map(|pair| explain_edge(&graph, &pair[0], &pair[1]))
                    .collect();
                format!("cycle: {}\n{}", cycle.join(" -> "), edges.join("\n"))
            })
            .collect();
        assert!(
            found.is_empty(),
            "{krate}'s top-level modules form cycles:\n{}",
            report.join("\n")
        );
    }
}

#[test]
fn every_module_uses_only_its_own_layer_or_lower_ones() {
    let src = src_dir();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("reading src/lib.rs");
    let layers = documented_layers(&lib);
    assert!(
        layers.len() > 1,
        "src/lib.rs has no \"## Layers\" list in its top comment: {layers:?}"
    );
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(n, modules)| modules.iter().map(move |m| (m.as_str(), n + 1)))
        .collect();
    let graph = graph_of(&src);
    let mut problems = Vec::new();
    for module in graph.keys() {
        if !layer_of.contains_key(module.as_str()) {
            problems.push(format!(
                "module `{module}` is in no layer of src/lib.rs; add it to the lowest layer \
                 above everything it uses"
            ));
        }
    }
    for (from, uses) in &graph {
        for to in uses.keys() {
            if let (Some(&low), Some(&high)) =
                (layer_of.get(to.as_str()), layer_of.get(from.as_str()))
                && low > high
            {
                problems.push(format!(
                    "layer {high} uses layer {low}:\n{}",
                    explain_edge(&graph, from, to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above can fail: a graph with a cycle yields it, in order.
#[test]
fn the_cycle_finder_names_the_modules_of_a_cycle_in_order() {
    let edge = |to: &str| {
        (
            to.to_owned(),
            vec![Reference {
                file: "x.rs".into(),
                text: format!("crate::{to}"),
            }],
        )
    };
    let graph: Graph = BTreeMap::from([
        ("a".to_owned(), BTreeMap::from([edge("b")])),
        ("b".to_owned(), BTreeMap::from([edge("c"), edge("d")])),
        ("c".to_owned(), BTreeMap::from([edge("a")])),
        ("d".to_owned(), BTreeMap::new()),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, vec!["a", "b", "c", "a"]);
    assert_eq!(
        found[0].1,
        BTreeSet::from(["a", "b", "c"].map(str::to_owned))
    );
    let acyclic: Graph = BTreeMap::from([
        ("a".to_owned(), BTreeMap::from([edge("b")])),
        ("b".to_owned(), BTreeMap::new()),
    ]);
    assert!(cycles(&acyclic).is_empty());
}

#[test]
fn references_are_read_from_code_and_docs_but_not_from_the_test_module() {
    let text = "use crate::errors::ProxyError;\n\
                //! see [`crate::run`]\n\
                let x = strait_crate::nope; other_crate::also_not;\n\
                #[cfg(test)]\nmod tests {\n    use crate::table::Table;\n}\n";
    let found: Vec<(String, String)> = crate_references(without_tests(text));
    assert_eq!(
        found,
        vec![
            ("errors".to_owned(), "crate::errors::ProxyError".to_owned()),
            ("run".to_owned(), "crate::run".to_owned()),
        ]
    );
}

#[test]
fn the_documented_layers_are_read_from_the_numbered_list() {
    let lib = "//! Intro.\n//!\n//! ## Layers\n//!\n\
               //! 1. `a`, `b`,\n//!    `c`: leaves, see `not_a_module`.\n\
               //! 2. `d`: uses [`a::X`].\n\npub mod a;\n";
    assert_eq!(documented_layers(lib), vec![vec!["a", "b", "c"], vec!["d"]]);
}
