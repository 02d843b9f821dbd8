//! The README's "Layout" names every source file, so a reader can find where a concern lives.

use std::path::Path;

/// The `.rs` files under `root/dir`, as paths from `root`, without the unit tests' files.
fn sources(root: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(dir)).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .expect("a named entry")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            if name != "tests" {
                sources(root, &dir.join(&name), found);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            found.push(dir.join(&name).to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_source_file_is_named_in_the_readme_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layout = readme.split_once("## Layout").expect("a Layout section").1;
    let named: Vec<&str> = layout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let mut found = Vec::new();
    sources(root, Path::new("src"), &mut found);
    found.sort();
    assert!(found.len() > 40, "the walk found the sources: {found:?}");
    let missing: Vec<&String> = found
        .iter()
        .filter(|f| !named.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's Layout: {missing:?}"
    );
}
