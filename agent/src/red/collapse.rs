//! Automatic collapse of route segments, learnt per service: once a segment shows more than
//! `max_values` distinct values under the same prefix, every value at that place becomes
//! `{id}` (the first ones too, from then on), so paths the heuristic in [`super::route`]
//! keeps as names (`/users/alice`, `/tags/rust`) cannot grow the series without bound.
//! The tree is bounded in nodes; past that, segments under prefixes it never saw collapse.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::route::ID;

/// What the tree knows about one prefix.
#[derive(Debug, Default)]
struct Node {
    values: HashSet<Box<str>>,
    collapsed: bool,
}

/// The learnt collapse state of one service's routes.
#[derive(Debug)]
pub struct RouteTree {
    max_values: usize,
    max_nodes: usize,
    /// Prefix (the collapsed template up to the segment, `""` for the first) → its node.
    nodes: HashMap<Box<str>, Node>,
}

impl RouteTree {
    pub fn new(max_values: usize, max_nodes: usize) -> Self {
        Self {
            max_values: max_values.max(1),
            max_nodes: max_nodes.max(1),
            nodes: HashMap::default(),
        }
    }

    /// The template `route` collapses to, learning its segments.
    pub fn apply(&mut self, route: &str) -> String {
        self.apply_changed(route)
            .unwrap_or_else(|| route.to_owned())
    }

    /// Like [`Self::apply`], but `None` when `route` stays as it is (no allocation: the
    /// common case).
    pub fn apply_changed(&mut self, route: &str) -> Option<String> {
        let rest = route.strip_prefix('/')?;
        // The collapsed template so far: a prefix of `route` until a segment changes.
        let mut out: Option<String> = None;
        let mut at = 0; // where the current segment's '/' is in `route`
        for segment in rest.split('/') {
            let keep = segment.is_empty() || segment.starts_with('{') || {
                let prefix = match &out {
                    Some(o) => o.as_str(),
                    None => &route[..at],
                };
                self.learn(prefix, segment)
            };
            match (&mut out, keep) {
                (None, true) => {}
                (None, false) => {
                    let mut o = String::with_capacity(route.len());
                    o.push_str(&route[..at]);
                    o.push('/');
                    o.push_str(ID);
                    out = Some(o);
                }
                (Some(o), _) => {
                    o.push('/');
                    o.push_str(if keep { segment } else { ID });
                }
            }
            at += 1 + segment.len();
        }
        out
    }

    /// Whether `segment` under `prefix` stays as it is.
    fn learn(&mut self, prefix: &str, segment: &str) -> bool {
        let full = self.nodes.len() >= self.max_nodes;
        let node = match self.nodes.get_mut(prefix) {
            Some(n) => n,
            None if full => return false,
            None => self.nodes.entry(prefix.into()).or_default(),
        };
        if node.collapsed {
            return false;
        }
        if node.values.contains(segment) {
            return true;
        }
        if node.values.len() < self.max_values {
            node.values.insert(segment.into());
            return true;
        }
        node.collapsed = true;
        node.values = HashSet::default();
        false
    }

    /// Prefixes whose next segment collapsed (for listing).
    pub fn collapsed(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.collapsed)
            .map(|(p, _)| &**p)
    }

    /// Start with the segment after `prefix` collapsed (learnt before a restart).
    pub fn mark_collapsed(&mut self, prefix: &str) {
        if self.nodes.len() < self.max_nodes || self.nodes.contains_key(prefix) {
            self.nodes.entry(prefix.into()).or_default().collapsed = true;
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Feeds `seen` to a tree (at most 3 values per prefix), then returns what `path` becomes.
    fn after(seen: &[&str], path: &str) -> String {
        let mut t = RouteTree::new(3, 100);
        for s in seen {
            t.apply(s);
        }
        t.apply(path)
    }

    #[rstest]
    #[case::fresh(&[], "/users/alice", "/users/alice")]
    #[case::under_limit(&["/users/a", "/users/b"], "/users/c", "/users/c")]
    #[case::at_limit_kept(&["/users/a", "/users/b", "/users/c"], "/users/a", "/users/a")]
    #[case::over_limit(&["/users/a", "/users/b", "/users/c"], "/users/d", "/users/{id}")]
    #[case::first_ones_collapse_too(
        &["/users/a", "/users/b", "/users/c", "/users/d"],
        "/users/a",
        "/users/{id}"
    )]
    #[case::deeper_kept(
        &["/users/a", "/users/b", "/users/c", "/users/d"],
        "/users/a/posts",
        "/users/{id}/posts"
    )]
    #[case::sibling_prefix_untouched(
        &["/users/a", "/users/b", "/users/c", "/users/d"],
        "/teams/a",
        "/teams/a"
    )]
    #[case::placeholders_are_free(
        &["/u/{id}", "/u/{id}.png", "/u/a"],
        "/u/b",
        "/u/b"
    )]
    #[case::top_level(&["/a", "/b", "/c", "/d"], "/e", "/{id}")]
    #[case::root(&[], "/", "/")]
    #[case::trailing_slash(&[], "/a/", "/a/")]
    #[case::asterisk(&[], "*", "*")]
    #[case::empty(&[], "", "")]
    #[case::collapsed_parent_then_child(
        &["/a/x/1", "/a/y/1", "/a/z/1", "/a/w/1", "/a/q/2", "/a/q/3", "/a/q/4"],
        "/a/q/5",
        "/a/{id}/{id}"
    )]
    fn collapse(#[case] seen: &[&str], #[case] path: &str, #[case] want: &str) {
        assert_eq!(after(seen, path), want);
    }

    #[test]
    fn nodes_are_bounded() {
        let mut t = RouteTree::new(100_000, 50);
        for i in 0..10_000 {
            t.apply(&format!("/p{i}/q{i}/r{i}"));
        }
        assert!(t.nodes() <= 50, "{}", t.nodes());
        // Past the node bound, unknown deeper prefixes collapse.
        assert_eq!(t.apply("/p9999/new/x"), "/p9999/{id}/{id}");
    }

    #[test]
    fn lists_collapsed_prefixes() {
        let mut t = RouteTree::new(1, 10);
        t.apply("/users/a");
        t.apply("/users/b");
        assert_eq!(t.collapsed().collect::<Vec<_>>(), vec!["/users"]);
    }
}
