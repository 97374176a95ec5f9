use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of the dependency a stack guards: `"payments"`, `"auth-db"`.
///
/// Every layer of one stack carries the same `Component`, so what a witness
/// hears from the shed, the breaker and the retry layer of a stack is filed
/// under one name. Cloning is cheap (a reference count), comparing and hashing
/// go by the name.
///
/// # Examples
///
/// ```
/// use reflex_core::Component;
///
/// let payments = Component::new("payments");
/// assert_eq!(payments.as_str(), "payments");
/// assert_eq!(payments, Component::from("payments"));
/// assert_eq!(Component::default().as_str(), "default");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Component(Arc<str>);

// === impl Component ===

impl Component {
    /// Names a component.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The component's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Component {
    /// A component named `"default"`, for stacks that were not given a name.
    fn default() -> Self {
        Self::new("default")
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Component {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for Component {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl From<Arc<str>> for Component {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl AsRef<str> for Component {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Component {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn components_with_the_same_name_are_equal_and_hash_alike() {
        let mut map = HashMap::new();
        map.insert(Component::new("db"), 1);
        assert_eq!(map.get("db"), Some(&1));
        assert_eq!(Component::from(String::from("db")), Component::new("db"));
        assert_ne!(Component::new("db"), Component::new("cache"));
    }

    #[test]
    fn display_and_debug_show_the_name() {
        let c = Component::new("auth");
        assert_eq!(c.to_string(), "auth");
        assert_eq!(format!("{c:?}"), "\"auth\"");
    }
}
