//! Kubernetes objects encoded by Kubernetes' own serializer
//! (`crates/cluster-shape/tests/fixtures/objects.hex`, one `name hex` per line).

/// The stored bytes of fixture `name` (e.g. `node_cp1`).
pub fn fixture(name: &str) -> Vec<u8> {
    include_str!("../../crates/cluster-shape/tests/fixtures/objects.hex")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .unwrap_or_else(|| panic!("fixture {name}"))
}
