//! What a backup leaves out: patterns, with restic's rules, and cache directories.
//!
//! A pattern is matched against the whole absolute path of each file and directory. It is cut
//! at `/` into components, each a shell glob (`*`, `?`, `[abc]`, `[!abc]`) that never crosses
//! a `/`; `**` stands for any number of components, none included. A pattern that starts with
//! `/` is anchored at the root; any other may match at any depth (`*.tmp` leaves out every
//! `.tmp` file, `node_modules` every directory of that name). A directory left out is not
//! entered. A pattern starting with `!` brings back what an earlier pattern left out; the last
//! pattern that matches decides.
//!
//! Cache directories (`--exclude-caches`) are those holding a `CACHEDIR.TAG` file that starts
//! with the signature of the Cache Directory Tagging Specification: the directory and its tag
//! are kept, the rest of its contents is not.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// One pattern: its components, and whether it brings back what others left out.
#[derive(Debug, Clone)]
struct Rule {
    parts: Vec<Part>,
    include: bool,
}

#[derive(Debug, Clone)]
enum Part {
    /// `**`: any number of components.
    Any,
    Glob(glob::Pattern),
}

/// What to leave out of a backup.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
    caches: bool,
}

impl Excludes {
    /// The patterns `patterns` (restic's rules, see the module), and cache directories when
    /// `caches`. An empty pattern, or a component that is no valid glob, is `Error::Invalid`.
    pub fn new(patterns: &[String], caches: bool) -> Result<Excludes> {
        let rules = patterns
            .iter()
            .map(|p| Self::rule(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Excludes { rules, caches })
    }

    fn rule(pattern: &str) -> Result<Rule> {
        let (include, body) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let body = body.trim_end_matches('/');
        if body.is_empty() || body.contains('\0') {
            return Err(Error::Invalid(format!(
                "{pattern:?} is not an exclude pattern"
            )));
        }
        let mut parts = vec![];
        if !body.starts_with('/') {
            parts.push(Part::Any);
        }
        for c in body.split('/').filter(|c| !c.is_empty()) {
            parts.push(match c {
                "**" => Part::Any,
                glob => Part::Glob(glob::Pattern::new(glob).map_err(|e| {
                    Error::Invalid(format!("{pattern:?} is not an exclude pattern: {e}"))
                })?),
            });
        }
        Ok(Rule { parts, include })
    }

    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.caches
    }

    /// Whether `path` (absolute) is left out by the patterns.
    pub(crate) fn excluded(&self, path: &Path) -> bool {
        let components: Vec<&str> = path
            .iter()
            .filter(|c| c.as_bytes() != b"/")
            .map(|c| c.to_str().unwrap_or("\u{fffd}"))
            .collect();
        self.rules
            .iter()
            .rev()
            .find(|r| matches(&r.parts, &components))
            .is_some_and(|r| !r.include)
    }

    /// Whether `dir` is a cache directory whose contents (but its tag) are left out.
    pub(crate) fn is_cache(&self, dir: &Path) -> bool {
        if !self.caches {
            return false;
        }
        let mut start = [0u8; CACHEDIR_SIGNATURE.len()];
        std::fs::File::open(dir.join(CACHEDIR_TAG))
            .and_then(|mut f| f.read_exact(&mut start))
            .is_ok_and(|()| start == CACHEDIR_SIGNATURE)
    }

    /// The name a cache directory keeps.
    pub(crate) fn cache_tag() -> &'static [u8] {
        CACHEDIR_TAG.as_bytes()
    }
}

/// Whether the pattern `parts` matches the whole path `path`.
fn matches(parts: &[Part], path: &[&str]) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    match parts.split_first() {
        None => path.is_empty(),
        Some((Part::Any, rest)) => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((Part::Glob(g), rest)) => match path.split_first() {
            Some((first, tail)) => g.matches_with(first, options) && matches(rest, tail),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(patterns: &[&str], path: &str) -> bool {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Excludes::new(&p, false).unwrap().excluded(Path::new(path))
    }

    #[test]
    fn patterns_follow_restics_rules() {
        assert!(out(&["*.tmp"], "/home/me/a.tmp"));
        assert!(out(&["*.tmp"], "/a.tmp"));
        assert!(!out(&["*.tmp"], "/home/me/a.tmp.txt"));
        assert!(out(&["node_modules"], "/src/app/node_modules"));
        assert!(!out(&["node_modules"], "/src/app/node_modules2"));
        assert!(out(&["/home/*/cache"], "/home/me/cache"));
        assert!(!out(&["/home/*/cache"], "/srv/home/me/cache"));
        assert!(!out(&["/home/*/cache"], "/home/me/x/cache"));
        assert!(out(&["/home/**/cache"], "/home/me/x/cache"));
        assert!(out(&["/home/**/cache"], "/home/cache"));
        assert!(out(&["foo/bar"], "/x/foo/bar"));
        assert!(!out(&["foo/bar"], "/x/foo/baz/bar"));
        assert!(out(&["a?c", "[xy].log"], "/d/x.log"));
        // The last matching pattern decides.
        assert!(!out(&["*.log", "!keep.log"], "/d/keep.log"));
        assert!(out(&["*.log", "!keep.log"], "/d/other.log"));
        assert!(out(&["!keep.log", "*.log"], "/d/keep.log"));
        for bad in ["", "!", "[", "a/[b"] {
            assert!(Excludes::new(&[bad.to_string()], false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_directories_are_known_by_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let ex = Excludes::new(&[], true).unwrap();
        assert!(!ex.is_cache(dir.path()));
        std::fs::write(
            dir.path().join(CACHEDIR_TAG),
            b"not the signature at all.....",
        )
        .unwrap();
        assert!(!ex.is_cache(dir.path()));
        let mut tag = CACHEDIR_SIGNATURE.to_vec();
        tag.extend_from_slice(b"\n# a cache\n");
        std::fs::write(dir.path().join(CACHEDIR_TAG), tag).unwrap();
        assert!(ex.is_cache(dir.path()));
        assert!(!Excludes::default().is_cache(dir.path()));
    }
}
