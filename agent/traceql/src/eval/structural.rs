//! Structural operators between spansets (`>>`, `>`, `<<`, `<`, `~`, their `!` negations and
//! `&` unions), answered from the span tree the way Tempo answers them from nested-set numbers.
//!
//! `{ A } op { B }` returns spans of B related to some span of A (`>>`: B is a descendant of
//! an A; `<<`: an ancestor; `>`: a child; `<`: the parent; `~`: a sibling, never itself). The
//! negations return the spans of B related to no span of A, every span of B when A is empty.
//! The unions return the spans of both sides that take part in a relation. Only spans reachable
//! from a root take part in relations: a span whose parent never arrived, and its subtree, are
//! nobody's child, descendant or sibling. The roots of a trace are siblings of each other.

use super::super::ast::SpansetOp;

/// Where one span sits in the trace's tree.
pub(super) struct Tree<'a> {
    /// Parent index, for spans reachable from a root (None for roots and unreachable spans).
    pub parent: &'a [Option<usize>],
    /// Whether the span is reachable from a root (its nested-set numbers are set).
    pub reachable: &'a [bool],
}

/// The relation a structural operator tests, read as "a span of B is ... of a span of A".
#[derive(Clone, Copy)]
enum Relation {
    Descendant,
    Ancestor,
    Child,
    Parent,
    Sibling,
}

impl Relation {
    fn inverse(self) -> Relation {
        match self {
            Relation::Descendant => Relation::Ancestor,
            Relation::Ancestor => Relation::Descendant,
            Relation::Child => Relation::Parent,
            Relation::Parent => Relation::Child,
            Relation::Sibling => Relation::Sibling,
        }
    }
}

/// Spans selected by `lhs op rhs` (both ascending index lists), ascending.
pub(super) fn relate(op: SpansetOp, lhs: &[usize], rhs: &[usize], tree: &Tree<'_>) -> Vec<usize> {
    use SpansetOp as O;
    if rhs.is_empty() {
        return Vec::new();
    }
    let (rel, negated, union) = match op {
        O::Descendant => (Relation::Descendant, false, false),
        O::Ancestor => (Relation::Ancestor, false, false),
        O::Child => (Relation::Child, false, false),
        O::Parent => (Relation::Parent, false, false),
        O::Sibling => (Relation::Sibling, false, false),
        O::NotDescendant => (Relation::Descendant, true, false),
        O::NotAncestor => (Relation::Ancestor, true, false),
        O::NotChild => (Relation::Child, true, false),
        O::NotParent => (Relation::Parent, true, false),
        O::NotSibling => (Relation::Sibling, true, false),
        O::UnionDescendant => (Relation::Descendant, false, true),
        O::UnionAncestor => (Relation::Ancestor, false, true),
        O::UnionChild => (Relation::Child, false, true),
        O::UnionParent => (Relation::Parent, false, true),
        O::UnionSibling => (Relation::Sibling, false, true),
        O::And | O::Or => return Vec::new(),
    };
    let from_rhs = related(rel, lhs, rhs, tree);
    if union {
        let from_lhs = related(rel.inverse(), rhs, lhs, tree);
        let picked: Vec<usize> = from_lhs
            .iter()
            .zip(lhs)
            .filter(|(hit, _)| **hit)
            .map(|(_, &s)| s)
            .collect();
        let right: Vec<usize> = from_rhs
            .iter()
            .zip(rhs)
            .filter(|(hit, _)| **hit)
            .map(|(_, &s)| s)
            .collect();
        return super::union(picked, right);
    }
    from_rhs
        .iter()
        .zip(rhs)
        .filter(|(hit, _)| **hit != negated)
        .map(|(_, &s)| s)
        .collect()
}

/// For each span of `of`, whether it stands in `rel` to some span of `to`.
fn related(rel: Relation, to: &[usize], of: &[usize], tree: &Tree<'_>) -> Vec<bool> {
    let n = tree.parent.len();
    let mut marked = vec![false; n];
    let reachable = |s: usize| tree.reachable.get(s).copied().unwrap_or(false);
    match rel {
        // Mark every span of `to`; a span of `of` matches when one of its ancestors is marked.
        Relation::Descendant => {
            for &a in to {
                if reachable(a) {
                    marked[a] = true;
                }
            }
            of.iter()
                .map(|&b| reachable(b) && ancestors(tree, b).any(|p| marked[p]))
                .collect()
        }
        // Mark the ancestors of every span of `to`.
        Relation::Ancestor => {
            for &a in to.iter().filter(|&&a| reachable(a)) {
                for p in ancestors(tree, a) {
                    if marked[p] {
                        break; // the rest of the chain is marked already
                    }
                    marked[p] = true;
                }
            }
            of.iter().map(|&b| marked[b]).collect()
        }
        Relation::Child => {
            for &a in to {
                if reachable(a) {
                    marked[a] = true;
                }
            }
            of.iter()
                .map(|&b| tree.parent[b].is_some_and(|p| marked[p]))
                .collect()
        }
        Relation::Parent => {
            for &a in to {
                if let Some(p) = tree.parent[a] {
                    marked[p] = true;
                }
            }
            of.iter().map(|&b| marked[b]).collect()
        }
        // Siblings share a parent; roots share the trace. Count `to` per parent so that a span
        // is not its own sibling.
        Relation::Sibling => {
            let key = |s: usize| -> Option<usize> {
                reachable(s).then(|| tree.parent[s].map_or(n, |p| p))
            };
            let mut per_parent = vec![0usize; n + 1];
            let mut in_to = vec![false; n];
            for &a in to {
                if let Some(k) = key(a) {
                    per_parent[k] += 1;
                    in_to[a] = true;
                }
            }
            of.iter()
                .map(|&b| key(b).is_some_and(|k| per_parent[k] > usize::from(in_to[b])))
                .collect()
        }
    }
}

/// The strict ancestors of a reachable span, nearest first.
fn ancestors<'t>(tree: &'t Tree<'_>, span: usize) -> impl Iterator<Item = usize> + 't {
    std::iter::successors(tree.parent[span], |&p| tree.parent[p]).take(tree.parent.len())
}
