//! The house rules a newcomer relies on, checked on the sources: no two modules of any crate in
//! the workspace import each other (directly or around a circle), and the operator's layers
//! import one way only — runtime → controllers → context → writes → state → ground floor, with
//! `hosttask` asking `hostgroup` one thing through `hostgroup::provisioned`.
//!
//! A module's imports are the paths it names from `use` declarations and code (`crate::…`,
//! `super::…`, `self::…`, its own child modules), resolved to the module file that defines
//! them. Comments, string literals and `#[cfg(test)] mod` blocks are left out: a test module
//! reads its parent by nature.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModulePath = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every module of the crate whose root file is `src/<root>`, by path, with its file.
fn modules(src: &Path, root: &str) -> BTreeMap<ModulePath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // `src/bin/*.rs` are crate roots of their own.
                if path.file_name().is_some_and(|n| n != "bin") {
                    dirs.push(path);
                }
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let name = rel.to_string_lossy().replace('\\', "/");
            if !name.ends_with(".rs") || name.ends_with("_tests.rs") || name == "main.rs" && root != "main.rs"
            {
                continue;
            }
            let mut segments: ModulePath =
                name.trim_end_matches(".rs").split('/').map(str::to_string).collect();
            if name == root {
                segments.clear();
            } else if segments.last().is_some_and(|s| s == "mod") {
                segments.pop();
            }
            found.insert(segments, path);
        }
    }
    found
}

fn at(chars: &[char], i: usize) -> char {
    chars.get(i).copied().unwrap_or('\0')
}

/// The source without comments, string and char literals, and `#[cfg(test)] mod … { … }` blocks.
fn code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if at(&chars, i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(&chars, i + 1) == '*' => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(&chars, i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(&chars, i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            'r' if (at(&chars, i + 1) == '"' || at(&chars, i + 1) == '#')
                && !out.ends_with(|c: char| c.is_alphanumeric() || c == '_') =>
            {
                let mut hashes = 0;
                let mut j = i + 1;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                while j < chars.len() && !chars[j..].iter().take(closing.len()).copied().eq(closing.chars()) {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + closing.len();
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i += 1;
            }
            // A char literal ('x', '\n', '\''), not a lifetime.
            '\'' if at(&chars, i + 2) == '\'' || at(&chars, i + 1) == '\\' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("' '");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    without_test_modules(&out)
}

fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let after = start + "#[cfg(test)]".len();
        let next = out[after..].trim_start();
        if !next.starts_with("mod ") {
            out.replace_range(start..after, "");
            continue;
        }
        let Some(open) = out[after..].find(['{', ';']).map(|i| after + i) else { break };
        if out.as_bytes()[open] == b';' {
            out.replace_range(start..=open, "");
            continue;
        }
        let mut depth = 0;
        let mut end = open;
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(start..=end, "");
    }
    out
}

/// `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default();
        return vec![path.split_whitespace().collect()];
    };
    let prefix: String = tree[..open].split_whitespace().collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| if p == "self" { prefix.trim_end_matches("::").to_string() } else { format!("{prefix}{p}") })
        .collect()
}

/// The paths a module's code names that may be this crate's: from `use` declarations, and
/// `crate::`/`super::`/`self::`/child-module paths anywhere.
fn named_paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (is_ident(bytes[i]) || code[i..].starts_with("::")) {
            i += if code[i..].starts_with("::") { 2 } else { 1 };
        }
        let word = &code[start..i];
        if word == "use" {
            let end = code[i..].find(';').map_or(code.len(), |e| i + e);
            paths.extend(expand(code[i..end].trim()).into_iter().map(|p| p.replace(' ', "")));
            i = end;
            continue;
        }
        let first = word.split("::").next().unwrap_or_default();
        if word.contains("::") && (matches!(first, "crate" | "super" | "self") || children.contains(first)) {
            paths.push(word.trim_end_matches("::").to_string());
        }
    }
    paths
}

/// The module a path names, from module `at`: the longest prefix that is a module.
fn resolve(path: &str, at: &ModulePath, known: &BTreeMap<ModulePath, PathBuf>) -> Option<ModulePath> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut absolute: ModulePath = match segments.next()? {
        "crate" => Vec::new(),
        "self" => at.clone(),
        "super" => at[..at.len().checked_sub(1)?].to_vec(),
        child => {
            let mut child_path = at.clone();
            child_path.push(child.to_string());
            if !known.contains_key(&child_path) {
                return None; // another crate (std, kube, …) or an item in scope
            }
            child_path
        }
    };
    for segment in segments {
        if segment == "super" {
            absolute.pop();
            continue;
        }
        let mut deeper = absolute.clone();
        deeper.push(segment.to_string());
        if !known.contains_key(&deeper) {
            break;
        }
        absolute = deeper;
    }
    Some(absolute)
}

/// Module → the modules it imports.
fn imports(src: &Path, root: &str) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let known = modules(src, root);
    let mut graph = BTreeMap::new();
    for (module, file) in &known {
        let code = code(&std::fs::read_to_string(file).unwrap());
        let children: BTreeSet<String> = known
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
        let targets: BTreeSet<ModulePath> = named_paths(&code, &children)
            .iter()
            .filter_map(|p| resolve(p, module, &known))
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

fn name(module: &ModulePath) -> String {
    if module.is_empty() { "(crate root)".into() } else { module.join("::") }
}

/// The circles in `graph`: strongly connected sets of more than one module (Tarjan).
fn circles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        index: BTreeMap<&'a ModulePath, usize>,
        low: BTreeMap<&'a ModulePath, usize>,
        stack: Vec<&'a ModulePath>,
        on_stack: BTreeSet<&'a ModulePath>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, m: &'a ModulePath) {
            let n = self.index.len();
            self.index.insert(m, n);
            self.low.insert(m, n);
            self.stack.push(m);
            self.on_stack.insert(m);
            for next in self.graph.get(m).into_iter().flatten() {
                let Some((next, _)) = self.graph.get_key_value(next) else { continue };
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[m].min(self.low[next]);
                    self.low.insert(m, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[m].min(self.index[next]);
                    self.low.insert(m, low);
                }
            }
            if self.low[m] == self.index[m] {
                let mut set = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    set.push(name(top));
                    if top == m {
                        break;
                    }
                }
                if set.len() > 1 {
                    set.sort();
                    self.found.push(set);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for m in graph.keys() {
        if !walk.index.contains_key(m) {
            walk.visit(m);
        }
    }
    walk.found
}

#[test]
fn no_import_circle_in_the_workspace() {
    let root = workspace();
    for (crate_src, root_file) in [
        ("operator/src", "lib.rs"),
        ("node-executor/src", "main.rs"),
        ("crds/src", "lib.rs"),
        ("kubectl-plugin/src", "lib.rs"),
        ("tests/sim/src", "lib.rs"),
    ] {
        let graph = imports(&root.join(crate_src), root_file);
        assert!(graph.len() > 3, "{crate_src}: the scan found the modules ({})", graph.len());
        let found = circles(&graph);
        assert!(found.is_empty(), "{crate_src}: modules that import each other: {found:?}");
    }
}

/// The operator's layer of a module, lowest first.
fn layer(module: &ModulePath) -> (usize, &'static str) {
    match module.first().map(String::as_str) {
        None => (7, "the crate root"),
        Some("runtime") => (6, "runtime"),
        Some("preview") => (6, "preview"),
        Some("hosttask") => (5, "the HostTask controller"),
        Some("hostgroup") => (4, "the HostGroup controller"),
        Some("context") => (3, "context"),
        Some("writes") => (2, "writes"),
        Some("state") => (1, "state"),
        Some(_) => (0, "the ground floor"),
    }
}

#[test]
fn the_operator_imports_one_way() {
    let graph = imports(&workspace().join("operator/src"), "lib.rs");
    let provisioned: ModulePath = vec!["hostgroup".into(), "provisioned".into()];
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        let (from, from_name) = layer(module);
        for target in targets {
            let (to, to_name) = layer(target);
            let ground_to_ground = from == 0 && to == 0;
            let same_unit = from == to && module.first() == target.first();
            let allowed = to < from || same_unit || (ground_to_ground && module != target);
            let tasks_ask_groups = from == 5 && to == 4;
            if !allowed || (tasks_ask_groups && *target != provisioned) {
                wrong.push(format!("{} ({from_name}) imports {} ({to_name})", name(module), name(target)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
    // The scan sees the imports it must: the controllers read the context and the state.
    let hosttask: ModulePath = vec!["hosttask".into(), "resolve".into()];
    assert!(graph[&hosttask].contains(&vec!["context".to_string()]), "{:?}", graph[&hosttask]);
    assert!(graph[&hosttask].contains(&provisioned), "{:?}", graph[&hosttask]);
}

#[test]
fn the_scanner_sees_through_comments_strings_and_grouped_imports() {
    let source = r#"
        // use crate::commented::out;
        use super::{a, b::{self, c}, d as e};
        let s = "crate::in_a_string";
        let r = r"C:\windows\crate::raw";
        let c = '"';
        fn f() { crate::labels::TASK; child::item(); }
        #[cfg(test)]
        mod tests { use crate::only_in_tests; }
    "#;
    let children = BTreeSet::from(["child".to_string()]);
    let found = named_paths(&code(source), &children);
    assert_eq!(
        found,
        ["super::a", "super::b", "super::b::c", "super::d", "crate::labels::TASK", "child::item"]
    );
}
