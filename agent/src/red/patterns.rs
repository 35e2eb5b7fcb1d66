//! User route patterns (`agent.red.routes`): `/users/{id}/posts/{post}` names the route of
//! every path with those literal segments and any one segment in place of each `{…}`; the
//! first pattern that matches wins, before the learnt collapse.

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

/// The configured patterns, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePatterns(Vec<(String, Vec<Segment>)>);

impl RoutePatterns {
    /// Parse the configured patterns; the error names the bad one and why.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let Some(rest) = p.strip_prefix('/') else {
                return Err(format!("route pattern {p:?} must start with '/'"));
            };
            let segments = rest
                .split('/')
                .map(|s| {
                    if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        if name.is_empty() || name.contains(['{', '}']) {
                            return Err(format!("route pattern {p:?}: bad parameter {s:?}"));
                        }
                        Ok(Segment::Param)
                    } else if s.contains(['{', '}']) {
                        Err(format!(
                            "route pattern {p:?}: a parameter takes a whole segment ({s:?})"
                        ))
                    } else {
                        Ok(Segment::Literal(s.to_owned()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push((p.clone(), segments));
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first pattern `route` matches.
    pub fn matching(&self, route: &str) -> Option<&str> {
        let rest = route.strip_prefix('/')?;
        'patterns: for (text, segments) in &self.0 {
            let mut parts = rest.split('/');
            for seg in segments {
                let Some(part) = parts.next() else {
                    continue 'patterns;
                };
                let ok = match seg {
                    Segment::Param => !part.is_empty(),
                    Segment::Literal(l) => l == part,
                };
                if !ok {
                    continue 'patterns;
                }
            }
            if parts.next().is_none() {
                return Some(text);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn patterns() -> RoutePatterns {
        RoutePatterns::parse(&[
            "/users/{id}".to_owned(),
            "/users/{id}/posts/{post}".to_owned(),
            "/tags/{tag}".to_owned(),
            "/tags/popular".to_owned(),
            "/".to_owned(),
        ])
        .unwrap()
    }

    #[rstest]
    #[case::param("/users/alice", Some("/users/{id}"))]
    #[case::heuristic_template("/users/{id}", Some("/users/{id}"))]
    #[case::deeper("/users/7/posts/9", Some("/users/{id}/posts/{post}"))]
    #[case::first_match_wins("/tags/popular", Some("/tags/{tag}"))]
    #[case::too_short("/users", None)]
    #[case::too_long("/users/a/b", None)]
    #[case::empty_segment("/users/", None)]
    #[case::literal_differs("/teams/alice", None)]
    #[case::root("/", Some("/"))]
    #[case::not_a_path("*", None)]
    #[case::empty("", None)]
    fn matching(#[case] route: &str, #[case] want: Option<&str>) {
        assert_eq!(patterns().matching(route), want);
    }

    #[rstest]
    #[case::no_slash("users/{id}")]
    #[case::half_param("/users/x{id}")]
    #[case::empty_param("/users/{}")]
    #[case::nested("/users/{{id}}")]
    fn bad_patterns(#[case] p: &str) {
        assert!(RoutePatterns::parse(&[p.to_owned()]).is_err(), "{p}");
    }
}
