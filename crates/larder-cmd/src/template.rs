//! Command templates: split like a POSIX shell splits words (quotes and backslashes only: no
//! variables, globs, pipes or redirections), then `%{SRC}` and `%{TGT}` are replaced inside each
//! word, so a path with spaces stays one argument. Nothing is ever run through a shell.

use std::fmt;

use larder_core::{Error, Result};

/// The placeholder for where bytes come from.
pub const SRC: &str = "%{SRC}";
/// The placeholder for where bytes go.
pub const TGT: &str = "%{TGT}";

/// Split `s` into words as `sh` would, without any expansion.
///
/// - Unquoted whitespace separates words.
/// - `'...'` is literal; `"..."` is literal except `\"`, `\\`, `\$` and `` \` ``.
/// - An unquoted `\` takes the next character literally (and `\` newline joins lines).
///
/// # Errors
/// [`Error::InvalidInput`] for an unterminated quote or a trailing backslash.
pub fn split(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => {
                            return Err(Error::invalid(format!(
                                "unterminated single quote in command {s:?}"
                            )));
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => cur.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                cur.push('\\');
                                cur.push(other);
                            }
                            None => {
                                return Err(Error::invalid(format!(
                                    "unterminated double quote in command {s:?}"
                                )));
                            }
                        },
                        Some(c) => cur.push(c),
                        None => {
                            return Err(Error::invalid(format!(
                                "unterminated double quote in command {s:?}"
                            )));
                        }
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => {
                    return Err(Error::invalid(format!(
                        "trailing backslash in command {s:?}"
                    )));
                }
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Quote `word` for display so it reads back as one word (`sh` syntax).
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "%+,-./:=@_{}".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A parsed command template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    words: Vec<String>,
}

impl Template {
    /// Parse `source`. `needs` lists the placeholders that must appear.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty template, bad quoting, or a missing placeholder.
    pub fn parse(source: &str, needs: &[&str]) -> Result<Template> {
        let words = split(source)?;
        if words.is_empty() {
            return Err(Error::invalid("empty command template"));
        }
        for p in needs {
            if !words.iter().any(|w| w.contains(p)) {
                return Err(Error::invalid(format!(
                    "command template {source:?} does not use {p}"
                )));
            }
        }
        if words[0].contains(SRC) || words[0].contains(TGT) {
            return Err(Error::invalid(format!(
                "command template {source:?}: the program itself cannot be a placeholder"
            )));
        }
        Ok(Template {
            source: source.to_owned(),
            words,
        })
    }

    /// The argument vector with the placeholders replaced.
    pub fn expand(&self, src: &str, tgt: &str) -> Vec<String> {
        self.words
            .iter()
            .map(|w| w.replace(SRC, src).replace(TGT, tgt))
            .collect()
    }

    /// The template as given.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// An argument vector for messages: `cp '/a b' /c`.
pub fn display(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_sh() {
        let cases: &[(&str, &[&str])] = &[
            ("cp %{SRC} %{TGT}", &["cp", "%{SRC}", "%{TGT}"]),
            ("  a   b\tc\n", &["a", "b", "c"]),
            (r#"a 'b c' "d e""#, &["a", "b c", "d e"]),
            (r#"a\ b c"#, &["a b", "c"]),
            (r#""x\"y" 'it'\''s'"#, &["x\"y", "it's"]),
            (r#""a\nb""#, &["a\\nb"]),
            ("''", &[""]),
            ("a'b'c", &["abc"]),
            ("$HOME *", &["$HOME", "*"]),
            ("a;b|c>d", &["a;b|c>d"]),
        ];
        for (input, want) in cases {
            let got = split(input).unwrap();
            assert_eq!(got, *want, "{input:?}");
        }
        for bad in ["'open", "\"open", "trailing\\"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_expand_inside_words() {
        let t = Template::parse("up --from=%{SRC} '%{TGT}'", &[SRC, TGT]).unwrap();
        assert_eq!(
            t.expand("/tmp/a b", "gs://bkt/x"),
            vec!["up", "--from=/tmp/a b", "gs://bkt/x"]
        );
        assert!(Template::parse("cp %{SRC}", &[SRC, TGT]).is_err());
        assert!(Template::parse("", &[]).is_err());
        assert!(Template::parse("%{SRC} x", &[SRC]).is_err());
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let argv = vec!["cp".to_owned(), "/a b".to_owned(), "it's".to_owned()];
        assert_eq!(display(&argv), r"cp '/a b' 'it'\''s'");
        assert_eq!(split(&display(&argv)).unwrap(), argv);
    }
}
