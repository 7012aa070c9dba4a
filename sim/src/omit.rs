//! Fields left out of text encodings when they hold nothing.
//!
//! Disks and reports are JSON, where an absent field reads back as its default, so an
//! empty one is left out (`#[serde(default, skip_serializing_if = "faultline_sim::omit::none")]`):
//! a sync's byte count is in the trace, and a field added later leaves older files
//! and traces as they were. The wire encodes structs positionally (MessagePack arrays,
//! no field names to write and read back), where a left-out field would shift every
//! later one into the wrong place: while a frame (or any positional encoding, such as a
//! broker's record batch) is encoded, nothing is left out.
//! Every `skip_serializing_if` in `sim` and `patterns` goes through this module (a
//! test scans the sources), so a type can travel both ways.

use std::cell::Cell;
use std::collections::BTreeMap;

thread_local! {
    static POSITIONAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `encode` with every field written, as a positional encoding needs.
pub fn positionally<T>(encode: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            POSITIONAL.set(self.0);
        }
    }
    let _restore = Restore(POSITIONAL.replace(true));
    encode()
}

fn in_text() -> bool {
    !POSITIONAL.get()
}

/// An absent option, left out of text.
pub fn none<T>(value: &Option<T>) -> bool {
    value.is_none() && in_text()
}

/// A zero count, left out of text.
pub fn zero(value: &u64) -> bool {
    *value == 0 && in_text()
}

/// A false flag, left out of text.
pub fn no(value: &bool) -> bool {
    !*value && in_text()
}

/// An empty map, left out of text.
pub fn empty<K, V>(value: &BTreeMap<K, V>) -> bool {
    value.is_empty() && in_text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Sparse {
        #[serde(default, skip_serializing_if = "none")]
        at: Option<u64>,
        #[serde(default, skip_serializing_if = "zero")]
        count: u64,
        #[serde(default, skip_serializing_if = "no")]
        done: bool,
        #[serde(default, skip_serializing_if = "empty")]
        names: BTreeMap<String, String>,
        last: u64,
    }

    #[test]
    fn empty_fields_are_left_out_of_text_and_written_positionally() {
        let sparse = Sparse {
            last: 7,
            ..Sparse::default()
        };
        assert_eq!(serde_json::to_string(&sparse).unwrap(), r#"{"last":7}"#);

        let bytes = positionally(|| rmp_serde::to_vec(&sparse)).unwrap();
        let back: Sparse = rmp_serde::from_slice(&bytes).expect("every field is in place");
        assert_eq!(back, sparse);
        // Without it the last field would be read as the first.
        let shifted = rmp_serde::to_vec(&sparse).unwrap();
        assert_ne!(rmp_serde::from_slice::<Sparse>(&shifted).ok(), Some(sparse));
    }

    #[test]
    fn text_leaves_fields_out_again_after_a_positional_encoding_panics() {
        let caught = std::panic::catch_unwind(|| positionally(|| panic!("an encoder panics")));
        assert!(caught.is_err());
        assert!(in_text());
    }
}
