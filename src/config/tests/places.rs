//! How a refused command line names the argument clap could not place.

use super::refused;

/// Only a short flag clap cut from a cluster (`-Z` of `-Zhunter2`) is looked for at the start of
/// the arguments; any other stray is the argument equal to it. A two-letter stray that is no flag
/// (a short password, `-X sasl.password pw`) matched by its start too would also match a longer
/// argument that begins with it, and lose the place it alone has.
#[test]
fn a_two_letter_stray_that_is_no_flag_is_named_by_its_place_beside_an_argument_it_begins() {
    for argv in [
        &["qikchat-bridge", "--cloudevents-source", "pwned", "pw"][..],
        &[
            "qikchat-bridge",
            "-X",
            "sasl.username=pw",
            "-X",
            "pwned=1",
            "pw",
        ][..],
    ] {
        let text = refused(argv);
        let place = argv.len() - 1;
        assert!(
            text.contains(&format!(
                "(argument {place}, not shown: it may hold a secret)"
            )),
            "{argv:?}: {text}"
        );
        assert!(!text.contains("'pw'"), "{argv:?}: {text}");
    }
}
