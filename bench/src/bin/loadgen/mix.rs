//! The body mix: the seed payloads cycled as text, three statuses, image, three statuses, over
//! 256 conversations, each body with its own message id. Shared by loadgen and the root crate's
//! `examples/classify_mix.rs` (through `#[path]`), so the classifier is measured on what the
//! bridge is loaded with.

/// The bodies, in sending order, made from the three seed payloads' texts.
pub fn mix(text: &str, image: &str, status: &str) -> Vec<String> {
    let status_as = |s: &str| {
        let out = status.replace("\"status\": \"read\"", &format!("\"status\": \"{s}\""));
        assert!(
            out.contains(&format!("\"status\": \"{s}\"")),
            "status-read.json has no \"status\": \"read\" to rewrite"
        );
        out
    };
    let cycle = [
        text.to_string(),
        status_as("sent"),
        status_as("delivered"),
        status_as("read"),
        image.to_string(),
        status_as("sent"),
        status_as("delivered"),
        status_as("read"),
    ];
    const SEED_ID: &str = "52JH6WmuSruAVyXvBBYemd0Ia";
    let mut out = Vec::with_capacity(256 * cycle.len());
    for conv in 0..256u32 {
        for (k, template) in cycle.iter().enumerate() {
            // Masked numbers (+91790XXXXXXX, 9184XXXXXXX) get this conversation's digits;
            // every body gets its own message id of the seed's length.
            let id = format!("bench{conv:010}{k:010}");
            debug_assert_eq!(id.len(), SEED_ID.len());
            let body = template
                .replace("XXXXXXX", &format!("{:07}", 1_000_000 + conv * 7919))
                .replace(SEED_ID, &id);
            out.push(body);
        }
    }
    out
}
