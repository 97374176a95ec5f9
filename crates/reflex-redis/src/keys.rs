//! [`Keys`]: how a fleet names its keys and its channel in Redis.
//!
//! Every key of one component carries the hash tag `{namespace:component}`,
//! so that a component's keys live in one slot of a Redis Cluster and one
//! Lua script may touch them all. The fleet's channel is one per namespace:
//! pub/sub messages reach every node of a cluster whatever their slot.

use std::fmt::Write as _;

/// The names of a fleet's keys and channel.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    namespace: String,
    channel: String,
}

impl Keys {
    pub(crate) fn new(namespace: String) -> Self {
        let channel = format!("reflex:{{{namespace}}}:events");
        Self { namespace, channel }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The fleet's pub/sub channel.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// The key `part` of `component`'s `kind` (`cb`, `budget`, `dedup`):
    /// `reflex:{namespace:kind:component}:part`.
    pub(crate) fn key(&self, kind: &str, component: &str, part: &str) -> String {
        let mut key =
            String::with_capacity(16 + self.namespace.len() + component.len() + part.len());
        let _ = write!(key, "reflex:{{{}:{kind}:", self.namespace);
        escape_into(&mut key, component);
        let _ = write!(key, "}}:{part}");
        key
    }
}

/// `name` with `{`, `}`, `|` and `%` percent-escaped: a component name can
/// then neither break a hash tag nor a message's fields.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    escape_into(&mut out, name);
    out
}

fn escape_into(out: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '{' | '}' | '|' | '%' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_components_keys_share_one_hash_tag() {
        let keys = Keys::new("shop".into());
        assert_eq!(keys.key("cb", "db", "open"), "reflex:{shop:cb:db}:open");
        assert_eq!(keys.key("cb", "db", "w:17"), "reflex:{shop:cb:db}:w:17");
        assert_eq!(keys.channel(), "reflex:{shop}:events");
    }

    #[test]
    fn a_name_cannot_break_the_hash_tag_or_a_message() {
        let keys = Keys::new("shop".into());
        let key = keys.key("cb", "a}b{c|d%", "open");
        assert_eq!(key, "reflex:{shop:cb:a%7Db%7Bc%7Cd%25}:open");
        // One tag: the first `{` and the first `}` after it.
        let open = key.find('{').unwrap();
        let close = key.find('}').unwrap();
        assert_eq!(&key[open + 1..close], "shop:cb:a%7Db%7Bc%7Cd%25");
        assert_eq!(escape("x|y"), "x%7Cy");
    }
}
