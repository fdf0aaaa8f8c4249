//! The library's modules depend on each other without cycles: each small utility lives in a
//! leaf module (`panics`, `report`, `nn::record`, ...) instead of in a high-level module that
//! also uses its callers.
//!
//! A module's dependencies are the crate paths its code names (`crate::train::...`,
//! `use crate::{check, data::Mnist}`), outside comments and its `#[cfg(test)] mod tests`.
//! Modules are the top-level ones: `src/nn/linear.rs` belongs to `nn`, so a layer that called
//! `inspect` (which uses `nn`) would be a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ should be readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module a file belongs to: `train`, `inspect`, `nn`; `None` for `lib.rs` and binaries.
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.first().map(String::as_str) {
        None | Some("lib") | Some("bin") => None,
        Some(first) => Some(first.to_string()),
    }
}

/// The top-level crate modules that `code` names.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                names.insert(name.to_string());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
        }
    }
    // Items of the crate root (Error, Result) and `self` are not modules.
    names.retain(|n| n.starts_with(|c: char| c.is_ascii_lowercase()) && n != "self");
    names
}

/// A file's code without comments and without its unit tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The library's module graph: each module and the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(module) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let mut named = named_modules(&code_of(&text));
        named.remove(&module);
        graph.entry(module).or_default().extend(named);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for named in graph.values_mut() {
        named.retain(|n| modules.contains(n));
    }
    graph
}

/// A cycle through `start`, if there is one: the modules in order, `start` first.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in &graph[&here] {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_modules_depend_on_each_other_without_cycles() {
    let graph = graph();
    for expected in [
        "train", "nn", "inspect", "report", "panics", "check", "plot", "live",
    ] {
        assert!(
            graph.contains_key(expected),
            "no module {expected} in {graph:?}"
        );
    }
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_through(&graph, module))
        .map(|cycle| format!("{} -> {}", cycle.join(" -> "), cycle[0]))
        .collect();
    assert!(
        cycles.is_empty(),
        "cycles between the library's modules (move the shared piece into a leaf module):\n{}",
        cycles.join("\n")
    );
}

/// The check itself finds a cycle where there is one, and reads grouped `use` lines.
#[test]
fn the_check_finds_a_cycle() {
    assert_eq!(
        named_modules("use crate::{Error, data::Mnist, live};\nlet x = crate::train::seed;"),
        BTreeSet::from(["data".to_string(), "live".to_string(), "train".to_string()])
    );
    let code = code_of("use crate::plot;\n// crate::live\n#[cfg(test)]\nmod tests { crate::x }");
    assert_eq!(named_modules(&code), BTreeSet::from(["plot".to_string()]));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), BTreeSet::from(["b".into()]));
    graph.insert("b".into(), BTreeSet::from(["c".into()]));
    graph.insert("c".into(), BTreeSet::from(["a".into()]));
    graph.insert("d".into(), BTreeSet::from(["a".into()]));
    assert_eq!(
        cycle_through(&graph, "a"),
        Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(cycle_through(&graph, "d"), None);
}
