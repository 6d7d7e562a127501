//! Optimistic concurrency (RFC 9110 §8.8.3 entity tags, §13.1.1 `If-Match`). A
//! configuration object's tag is its id and version; the version grows with every
//! change. Writes check the precondition against the row they lock, inside their own
//! transaction, so a check and the write it guards cannot be separated by another write.

use uuid::Uuid;

/// The strong entity tag of an object at a version, quoted as it goes in a header.
/// The id is part of it so that a tag of a removed object never matches a new object
/// that took its name.
pub fn entity_tag(id: Uuid, version: i64) -> String {
    format!("\"{}-{version}\"", id.simple())
}

/// A parsed `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the object must exist.
    Any,
    /// One of these tags must be the current one.
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses the header's value: `*` or a comma-separated list of entity tags. Weak
    /// tags (`W/"…"`) are kept but never match: `If-Match` uses the strong comparison.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value == "*" {
            return Ok(IfMatch::Any);
        }
        let tags: Vec<String> = value.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        let quoted = |t: &str| {
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t[1..t.len() - 1].contains('"')
        };
        if tags.is_empty() || !tags.iter().all(|t| quoted(t)) {
            return Err("If-Match must be * or a list of quoted entity tags, e.g. \"0192…-3\"".into());
        }
        Ok(IfMatch::Tags(tags))
    }

    /// Whether the precondition holds for the object's current tag (`None`: no object).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (_, None) => false,
            (IfMatch::Any, Some(_)) => true,
            (IfMatch::Tags(tags), Some(current)) => tags.iter().any(|t| t == current),
        }
    }
}

/// Checks an optional precondition against the locked row's id and version.
pub(super) fn check(
    if_match: Option<&IfMatch>,
    current: Option<(Uuid, i64)>,
    what: impl FnOnce() -> String,
) -> Result<(), super::StoreError> {
    match if_match {
        Some(p) if !p.holds(current.map(|(id, v)| entity_tag(id, v)).as_deref()) => {
            Err(super::StoreError::PreconditionFailed(what()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_uses_the_strong_comparison() {
        let id = Uuid::nil();
        let tag = entity_tag(id, 3);
        assert!(IfMatch::parse(&tag).unwrap().holds(Some(&tag)));
        assert!(IfMatch::parse(&format!("\"x\", {tag}")).unwrap().holds(Some(&tag)));
        assert!(!IfMatch::parse(&format!("W/{tag}")).unwrap().holds(Some(&tag)));
        assert!(!IfMatch::parse(&entity_tag(id, 2)).unwrap().holds(Some(&tag)));
        assert!(IfMatch::parse("*").unwrap().holds(Some(&tag)));
        assert!(!IfMatch::parse("*").unwrap().holds(None), "no current object: the precondition fails");
        for bad in ["", "abc", "\"a", "\"a\"b\""] {
            assert!(IfMatch::parse(bad).is_err(), "{bad:?}");
        }
    }
}
