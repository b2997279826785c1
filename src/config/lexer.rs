//! Stage 1: text -> lines of words (HAProxy configuration manual §2.2-2.3).
//!
//! * Words are separated by spaces and tabs; `#` outside quotes starts a
//!   comment, even in the middle of a word.
//! * `"..."` keeps spaces, understands backslash escapes and expands
//!   environment variables; `'...'` is fully literal. Quoted and unquoted
//!   parts concatenate into one word: `"a"'b'c` is `abc`.
//! * Backslash escapes, outside single quotes: `\ ` `\#` `\\` `\'` `\"` `\$`
//!   give the character itself, `\t` `\n` `\r` a tab, newline and carriage
//!   return, `\xHH` the character U+00HH. Any other backslash is kept as is
//!   (`\1` stays `\1`, useful in regular expressions); so is a trailing one
//!   (there is no line continuation).
//! * `$NAME`, `${NAME}` and `${NAME-default}` are expanded outside single
//!   quotes. An undefined variable expands to the empty string; an unquoted
//!   word that ends up empty that way disappears.

/// One non-empty line: its 1-based number and its words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub number: u32,
    pub words: Vec<String>,
}

/// Splits a whole file into lines of words. Lines that fail to lex are
/// reported as `(line number, message)` and left out.
pub(crate) fn lex(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<Line>, Vec<(u32, String)>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match lex_line(raw, env) {
            Ok(words) if words.is_empty() => {}
            Ok(words) => lines.push(Line { number, words }),
            Err(message) => errors.push((number, message)),
        }
    }
    (lines, errors)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// The word being built: `started` is true once it must be emitted even if
/// empty (it had a quote or a literal character).
struct Word {
    text: String,
    started: bool,
}

/// Splits one line (without its end of line) into words.
pub(crate) fn lex_line(
    line: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = Word {
        text: String::new(),
        started: false,
    };
    let mut quote = Quote::None;
    let mut quote_at = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Quote::Single, '\'') | (Quote::Double, '"') => {
                quote = Quote::None;
                i += 1;
            }
            (Quote::Single, _) => {
                word.text.push(c);
                i += 1;
            }
            (_, '\\') => {
                i = escape(&chars, i, &mut word.text)?;
                word.started = true;
            }
            (_, '$') => {
                let (next, value) = expand(&chars, i, env)?;
                word.started |= quote == Quote::Double || !value.is_empty();
                word.text.push_str(&value);
                i = next;
            }
            (Quote::Double, _) => {
                word.text.push(c);
                i += 1;
            }
            (Quote::None, ' ' | '\t') => {
                if word.started {
                    words.push(std::mem::take(&mut word.text));
                }
                word = Word {
                    text: String::new(),
                    started: false,
                };
                i += 1;
            }
            (Quote::None, '#') => break,
            (Quote::None, '\'' | '"') => {
                quote = if c == '"' {
                    Quote::Double
                } else {
                    Quote::Single
                };
                quote_at = i;
                word.started = true;
                i += 1;
            }
            (Quote::None, _) => {
                word.text.push(c);
                word.started = true;
                i += 1;
            }
        }
    }
    if quote != Quote::None {
        return Err(format!("unmatched quote at position {}", quote_at + 1));
    }
    if word.started {
        words.push(word.text);
    }
    Ok(words)
}

/// Handles the backslash at `chars[i]`; returns the index after the sequence.
fn escape(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let Some(&next) = chars.get(i + 1) else {
        out.push('\\');
        return Ok(i + 1);
    };
    let plain = match next {
        ' ' | '\\' | '#' | '\'' | '"' | '$' => next,
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'x' => {
            let hex: String = chars.iter().skip(i + 2).take(2).collect();
            let byte = match u8::from_str_radix(&hex, 16) {
                Ok(b) if hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => b,
                _ => {
                    return Err(format!(
                        "truncated or invalid hexadecimal sequence at position {}",
                        i + 1
                    ))
                }
            };
            out.push(char::from(byte));
            return Ok(i + 4);
        }
        _ => {
            out.push('\\');
            return Ok(i + 1);
        }
    };
    out.push(plain);
    Ok(i + 2)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Handles the `$` at `chars[i]`: `$NAME`, `${NAME}`, `${NAME-default}`, or a
/// literal `$`. Returns the index after it and the expansion.
fn expand(
    chars: &[char],
    i: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(usize, String), String> {
    match chars.get(i + 1) {
        Some('{') => {
            let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                return Err(format!(
                    "unmatched brace in environment variable name at position {}",
                    i + 1
                ));
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let (name, default) = match inner.split_once('-') {
                Some((name, default)) => (name, Some(default)),
                None => (inner.as_str(), None),
            };
            let valid = name.starts_with(is_name_start) && name.chars().all(is_name_char);
            if !valid {
                return Err(format!(
                    "invalid environment variable name '{name}' at position {}",
                    i + 1
                ));
            }
            let value = env(name).or_else(|| default.map(str::to_string));
            Ok((i + 3 + close, value.unwrap_or_default()))
        }
        Some(&c) if is_name_start(c) => {
            let len = chars[i + 1..]
                .iter()
                .take_while(|&&c| is_name_char(c))
                .count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            Ok((i + 1 + len, env(&name).unwrap_or_default()))
        }
        _ => Ok((i + 1, "$".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("3001".into()),
            "SPACED" => Some("a b".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn words(line: &str) -> Vec<String> {
        match lex_line(line, &env) {
            Ok(w) => w,
            Err(e) => panic!("{line:?}: {e}"),
        }
    }

    fn err(line: &str) -> String {
        match lex_line(line, &env) {
            Ok(w) => panic!("{line:?} lexed as {w:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_words_and_comments() {
        assert_eq!(
            words("  bind\t:80   proto h2 "),
            ["bind", ":80", "proto", "h2"]
        );
        assert_eq!(words("mode http # comment"), ["mode", "http"]);
        assert_eq!(words("mode http#comment"), ["mode", "http"]);
        assert_eq!(words("# only a comment"), Vec::<String>::new());
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(
            words("use_backend b if { path /x }"),
            ["use_backend", "b", "if", "{", "path", "/x", "}"]
        );
    }

    #[test]
    fn quotes() {
        assert_eq!(words(r#"log "a b" 'c d'"#), ["log", "a b", "c d"]);
        assert_eq!(words(r#""a"'b'c"#), ["abc"]);
        assert_eq!(words(r#"x "" y"#), ["x", "", "y"]);
        assert_eq!(words(r#"x '' y"#), ["x", "", "y"]);
        assert_eq!(words(r#""a#b" c"#), ["a#b", "c"]);
        assert_eq!(words(r#"'${PORT} \n'"#), [r"${PORT} \n"]);
        assert_eq!(words(r#""it's""#), ["it's"]);
        assert_eq!(words(r#"'say "hi"'"#), [r#"say "hi""#]);
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r"a\#b"), ["a#b"]);
        assert_eq!(words(r"a\\b"), [r"a\b"]);
        assert_eq!(words(r#"a\"b\'c"#), [r#"a"b'c"#]);
        assert_eq!(words(r#""q\"q" "t\tn\nr\r""#), ["q\"q", "t\tn\nr\r"]);
        assert_eq!(words(r#""\x41\x7a""#), ["Az"]);
        assert_eq!(words(r"\x41"), ["A"]);
        assert_eq!(words(r"re\1"), [r"re\1"]);
        assert_eq!(words(r"trailing\"), [r"trailing\"]);
        assert_eq!(words(r"\$PORT"), ["$PORT"]);
        assert_eq!(
            err(r#"x "\x4""#),
            "truncated or invalid hexadecimal sequence at position 4"
        );
        assert_eq!(
            err(r"x \xzz"),
            "truncated or invalid hexadecimal sequence at position 3"
        );
    }

    #[test]
    fn env_vars() {
        assert_eq!(words("bind :${PORT}"), ["bind", ":3001"]);
        assert_eq!(words("bind :$PORT"), ["bind", ":3001"]);
        assert_eq!(words(r#"bind ":${PORT}""#), ["bind", ":3001"]);
        assert_eq!(words("x ${SPACED} y"), ["x", "a b", "y"]);
        assert_eq!(words("x ${NOPE} y"), ["x", "y"]);
        assert_eq!(words("x $NOPE y"), ["x", "y"]);
        assert_eq!(words("x ${EMPTY} y"), ["x", "y"]);
        assert_eq!(words(r#"x "${NOPE}" y"#), ["x", "", "y"]);
        assert_eq!(words("x a${NOPE}b"), ["x", "ab"]);
        assert_eq!(words("x ${NOPE-dflt} ${PORT-9}"), ["x", "dflt", "3001"]);
        assert_eq!(words(r#""${NOPE-a b}""#), ["a b"]);
        assert_eq!(words("cost $ 5$"), ["cost", "$", "5$"]);
        assert_eq!(words("x $1"), ["x", "$1"]);
        assert_eq!(
            err("x ${PORT"),
            "unmatched brace in environment variable name at position 3"
        );
        assert_eq!(
            err("x ${1A}"),
            "invalid environment variable name '1A' at position 3"
        );
        assert_eq!(
            err("x ${}"),
            "invalid environment variable name '' at position 3"
        );
    }

    #[test]
    fn unmatched_quotes() {
        assert_eq!(err(r#"log "stdout"#), "unmatched quote at position 5");
        assert_eq!(err("log 'x"), "unmatched quote at position 5");
        assert_eq!(err(r#"log "a\""#), "unmatched quote at position 5");
    }

    #[test]
    fn whole_files() {
        let (lines, errors) = lex("\u{feff}global\r\n\n  maxconn 5 # c\n x \"y\n", &env);
        assert_eq!(
            lines,
            [
                Line {
                    number: 1,
                    words: vec!["global".into()]
                },
                Line {
                    number: 3,
                    words: vec!["maxconn".into(), "5".into()]
                },
            ]
        );
        assert_eq!(errors, [(4, "unmatched quote at position 4".to_string())]);
    }

    #[test]
    fn junk_does_not_panic() {
        let junk: String = (0u8..=255).map(char::from).collect();
        let _ = lex(&junk, &env);
        let _ = lex("\0\0\0 {\n}\n\\\n$\n${\n\"\n'\n\\x\n\\x4", &env);
        let _ = lex(&"é\\x".repeat(1000), &env);
    }
}
