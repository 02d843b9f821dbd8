//! The README's "Settings" table names every flag of the bridge, with its environment variable
//! and clap's default.

use clap::CommandFactory;
use qikchat_bridge::config::Cli;

/// The first `cells` cells of each row of the README's Settings table.
fn settings_rows(cells: usize) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let settings = readme
        .split_once("## Settings")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .expect("a Settings section")
        .0;
    settings
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").take(cells).map(str::to_string).collect())
        .collect()
}

#[test]
fn every_flag_and_its_variable_are_in_the_readme_settings_table() {
    // A row's flag and variable cells, as `--flag VALUE` and `VARIABLE` (then any words).
    let rows = settings_rows(2);
    let command = Cli::command();
    let mut checked = 0;
    let mut missing = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        checked += 1;
        let flag = format!("--{long}");
        let names = |cell: &str, name: &str| {
            cell.contains(&format!("`{name}`")) || cell.contains(&format!("`{name} "))
        };
        let Some(row) = rows.iter().find(|r| names(&r[0], &flag)) else {
            missing.push(flag);
            continue;
        };
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            if !row.get(1).is_some_and(|cell| names(cell, &env)) {
                missing.push(format!("{flag} without {env}"));
            }
        }
    }
    assert!(checked > 25, "the flags were found: {checked}");
    assert!(
        missing.is_empty(),
        "not in the README's Settings: {missing:?}"
    );
}

/// Each default the README's Settings table gives is the one clap applies: a changed default in
/// `src/config/args.rs` must change the table too (an operator sizes timeouts and limits by it).
#[test]
fn every_default_in_the_readme_settings_table_is_claps() {
    // A row's flag, variable and default cells.
    let rows = settings_rows(3);
    let command = Cli::command();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // Flags that take no value (clap's implicit `false`) are written `false` or `off`.
        if !arg.get_action().takes_values() {
            continue;
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let [default] = defaults.as_slice() else {
            continue;
        };
        let flag = format!("--{long}");
        let Some(row) = rows
            .iter()
            .find(|r| r[0].contains(&format!("`{flag}`")) || r[0].contains(&format!("`{flag} ")))
        else {
            continue; // the other test names the missing row
        };
        let Some(cell) = row.get(2) else {
            wrong.push(format!("{flag}: no default cell"));
            continue;
        };
        checked += 1;
        let ok = if default.is_empty() {
            cell.trim() == "empty"
        } else {
            cell.contains(&format!("`{default}`"))
        };
        if !ok {
            wrong.push(format!(
                "{flag}: clap's default is {default:?}, the README says {cell:?}"
            ));
        }
    }
    assert!(checked > 15, "the defaults were found: {checked}");
    assert!(
        wrong.is_empty(),
        "README Settings defaults differ: {wrong:#?}"
    );
}
