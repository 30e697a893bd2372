//! A fast reader for the subset of YAML that manifests are nearly always
//! written in: block mappings and sequences, one scalar (or empty `{}`,
//! `[]`) per line, plain or quoted without escapes, ASCII, spaces for
//! indentation, whole-line comments, `---` between documents.
//!
//! For a text inside that subset it builds exactly the nodes, values and
//! positions, that `yaml-rust2`'s events give [`super::parse_stream`] (the
//! tests compare the two on every manifest of the repository and on
//! generated ones); for anything else (flow collections, anchors, tags,
//! block scalars, multi-line scalars, escapes, trailing comments, syntax
//! errors) it gives up, and the text is parsed by `yaml-rust2`. It exists
//! because `yaml-rust2`, reading character by character through a token
//! queue, was most of the time of reading a large cluster's manifests.

use super::{plain_scalar, Document, Node, Pos, Value, MAX_DEPTH};

/// One line holding a token (blank and comment lines are left out).
#[derive(Clone, Copy)]
struct Line<'t> {
    /// 1-based line number.
    number: u32,
    /// Leading spaces.
    indent: usize,
    /// The line without its newline.
    text: &'t str,
}

impl Line<'_> {
    fn is_document_start(&self) -> bool {
        self.text == "---"
    }

    /// The position of byte `col` of the line.
    fn pos(&self, col: usize) -> Pos {
        Pos { line: self.number, col: col as u32 + 1 }
    }
}

/// The documents of `text`, or `None` if `text` is not inside the subset.
pub(super) fn parse(text: &str) -> Option<Vec<Document>> {
    let mut reader = Reader::new(text)?;
    let mut documents = Vec::new();
    // Whether a `---` opened a document that has no node yet.
    let mut open = false;
    while let Some(line) = reader.peek() {
        if line.is_document_start() {
            if open {
                documents.push(Document { root: Node { value: Value::Null, pos: line.pos(0) } });
            }
            open = true;
            reader.next += 1;
            continue;
        }
        let root = reader.block(line.indent)?;
        documents.push(Document { root });
        open = false;
        if reader.peek().is_some_and(|next| !next.is_document_start()) {
            return None;
        }
    }
    if open {
        documents.push(Document { root: Node { value: Value::Null, pos: reader.end } });
    }
    Some(documents)
}

struct Reader<'t> {
    lines: Vec<Line<'t>>,
    /// The next line to read.
    next: usize,
    /// Where the stream ends (the position of a value missing at the end).
    end: Pos,
    /// Collections open around the one being read.
    depth: usize,
}

impl<'t> Reader<'t> {
    fn new(text: &'t str) -> Option<Reader<'t>> {
        if !text.is_empty() && !text.ends_with('\n') {
            return None;
        }
        let mut lines = Vec::new();
        let mut number = 0;
        for raw in text.split_terminator('\n') {
            number += 1;
            if !raw.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return None; // tabs, carriage returns, control and non-ASCII characters
            }
            let content = raw.trim_start_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if content.contains('#') || content.ends_with(' ') {
                return None;
            }
            lines.push(Line { number, indent: raw.len() - content.len(), text: raw });
        }
        Some(Reader { lines, next: 0, end: Pos { line: number + 1, col: 1 }, depth: 0 })
    }

    fn peek(&self) -> Option<Line<'t>> {
        self.lines.get(self.next).copied()
    }

    /// The next line if it continues a collection whose entries start at
    /// `col`: `None` at the end of the collection, an error (outer `None`)
    /// for a line indented deeper.
    fn continues(&self, col: usize) -> Option<Option<Line<'t>>> {
        match self.peek() {
            Some(line) if line.is_document_start() || line.indent < col => Some(None),
            Some(line) if line.indent == col => Some(Some(line)),
            Some(_) => None,
            None => Some(None),
        }
    }

    /// A collection starting at byte `col` of the next line.
    fn block(&mut self, col: usize) -> Option<Node> {
        let line = self.peek()?;
        let rest = &line.text[col..];
        if is_entry(rest) {
            self.sequence(col, line.pos(col))
        } else if split_key(rest).is_some() {
            self.mapping(col)
        } else {
            None
        }
    }

    /// Reads a collection with `read` one level deeper; a text nested
    /// deeper than [`MAX_DEPTH`] is left to the event reader, which reports
    /// it (and this reader recurses once per level).
    fn nest(&mut self, read: impl FnOnce(&mut Self) -> Option<Node>) -> Option<Node> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let node = read(self);
        self.depth -= 1;
        node
    }

    /// A block sequence whose `-` are at `col`; `pos` is where the events
    /// say it starts.
    fn sequence(&mut self, col: usize, pos: Pos) -> Option<Node> {
        self.nest(|reader| reader.sequence_items(col, pos))
    }

    fn sequence_items(&mut self, col: usize, pos: Pos) -> Option<Node> {
        let mut items = Vec::new();
        let mut line = self.peek()?;
        loop {
            let rest = &line.text[col..];
            if !is_entry(rest) {
                break;
            }
            let content = col + 1 + rest[1..].len() - rest[1..].trim_start_matches(' ').len();
            if content == line.text.len() {
                return None; // the item is on the next lines
            }
            items.push(self.item(line, content)?);
            match self.continues(col)? {
                Some(next) => line = next,
                None => break,
            }
        }
        Some(Node { value: Value::Seq(items), pos })
    }

    /// A sequence item starting at byte `col` of `line`.
    fn item(&mut self, line: Line<'t>, col: usize) -> Option<Node> {
        let rest = &line.text[col..];
        if is_entry(rest) || split_key(rest).is_some() {
            return self.block(col);
        }
        self.next += 1;
        scalar(rest, line.pos(col))
    }

    /// A block mapping whose keys are at `col`.
    fn mapping(&mut self, col: usize) -> Option<Node> {
        self.nest(|reader| reader.mapping_entries(col))
    }

    fn mapping_entries(&mut self, col: usize) -> Option<Node> {
        let mut entries = Vec::new();
        let mut line = self.peek()?;
        let pos = line.pos(col);
        loop {
            let (key, value) = split_key(&line.text[col..])?;
            let key = Node { value: plain(key)?, pos: line.pos(col) };
            self.next += 1;
            let value = match value.trim_start_matches(' ') {
                "" => self.nested(col)?,
                text => scalar(text, line.pos(line.text.len() - text.len()))?,
            };
            entries.push((key, value));
            match self.continues(col)? {
                Some(next) => line = next,
                None => break,
            }
        }
        Some(Node { value: Value::Map(entries), pos })
    }

    /// The value of a key at `col` with nothing after its `:`: a collection
    /// on the next lines, or null.
    fn nested(&mut self, col: usize) -> Option<Node> {
        let Some(next) = self.peek() else { return Some(Node { value: Value::Null, pos: self.end }) };
        let rest = &next.text[next.indent..];
        if !next.is_document_start() && next.indent > col {
            self.block(next.indent)
        } else if !next.is_document_start() && next.indent == col && is_entry(rest) {
            // An indentless sequence: the events start it at its first item.
            let content = next.indent + 1 + rest[1..].len() - rest[1..].trim_start_matches(' ').len();
            self.sequence(col, next.pos(content))
        } else {
            Some(Node { value: Value::Null, pos: next.pos(next.indent) })
        }
    }
}

/// Where `: ` first is in `text` (a byte search: the generic substring
/// search was a sixth of this reader's time on short scalars).
fn colon_space(text: &str) -> Option<usize> {
    text.as_bytes().windows(2).position(|pair| pair == b": ")
}

/// Whether `rest` starts a sequence item (`- ...` or a lone `-`).
fn is_entry(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

/// `key: value` or `key:` as the key and what follows the `:`.
fn split_key(rest: &str) -> Option<(&str, &str)> {
    let (key, value) = match colon_space(rest) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest.strip_suffix(':')?, ""),
    };
    let first = key.bytes().next()?;
    let key_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-' | b':');
    let ok = (first.is_ascii_alphanumeric() || matches!(first, b'.' | b'_' | b'/'))
        && key.bytes().all(key_byte)
        && !key.ends_with(':')
        // `yaml-rust2` refuses longer implicit keys.
        && key.len() < 1024;
    ok.then_some((key, value))
}

/// A plain scalar that means the same to `yaml-rust2` on its own line.
fn plain(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    let first = *bytes.first()?;
    let starts_well = first.is_ascii_alphanumeric()
        || matches!(first, b'.' | b'_' | b'/' | b'+' | b'~' | b'(')
        || (first == b'-' && bytes.get(1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.'));
    let inner_ok = colon_space(text).is_none()
        && !text.ends_with(':')
        && !bytes.iter().any(|b| matches!(b, b'[' | b']' | b'{' | b'}' | b'"' | b'\'' | b'`' | b'\\'));
    (starts_well && inner_ok).then(|| plain_scalar(text))
}

/// A value filling the rest of a line, at `pos`: a scalar, or an empty
/// collection (`{}`, `[]`).
fn scalar(text: &str, pos: Pos) -> Option<Node> {
    let value = match text.as_bytes()[0] {
        _ if text == "{}" => Value::Map(Vec::new()),
        _ if text == "[]" => Value::Seq(Vec::new()),
        quote @ (b'"' | b'\'') => {
            let inner = text[1..].strip_suffix(quote as char)?;
            if inner.bytes().any(|b| b == quote || b == b'\\') {
                return None;
            }
            Value::Str(inner.to_string())
        }
        _ => plain(text)?,
    };
    Some(Node { value, pos })
}

#[cfg(test)]
mod tests {
    use super::super::events::parse as parse_events;
    use super::*;
    use std::path::Path;

    /// Whether the fast path read `text`; panics if it read it otherwise
    /// than `yaml-rust2`.
    fn same(text: &str) -> bool {
        let Some(fast) = parse(text) else { return false };
        let (slow, error, _) = parse_events(text);
        assert!(error.is_none(), "the fast path read a text yaml-rust2 refuses: {text:?}");
        assert_eq!(fast, slow, "{text:?}");
        true
    }

    #[test]
    fn reads_the_block_subset_as_yaml_rust2_does() {
        let read = [
            "",
            "\n\n",
            "# only a comment\n",
            "a: 1\n",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"x\"\n  labels:\n    a: 'b'\n    k8s:io.kubernetes.pod.namespace: n\n",
            "a:\n  - - x\n    - z\n  - y\n",
            "a:\n- - x\n- y\nb: 2\n",
            "a:\n-   \"q\"\nb: 1\n",
            "a:\n  b:\nc: 1\n",
            "a:\n  b:\n  c: 1\n",
            "a:\n  b:\n\n\n",
            "a: 1\n---\n",
            "---\na: 1\n",
            "---\n---\n",
            "a: 1\n---\n# c\n",
            "- a\n-  b\n",
            "a:\n  - b:\n    c: 1\n",
            "a:\n  - b: 1\n    c:\n      - x\n  -   d: 2\n      e: ~\n",
            "  a: 1\n  b: 2\n",
            "a:\n    b: 1\n    # comment\n  # less indented comment\n    c: 1\nd: -1\n",
            "a: 0x1F\nb: 0o17\nc: 1.5\nd: true\ne: null\nf: a b  c\ng: http://x/y\nh: fd00::1\ni: W0201,W0204\n",
            "80: x\ntrue: y\n",
            "a: ''\nb: \"\"\n",
            "a:\n---\nb:\n",
            "a: {}\nb:  []\nc:\n- {}\n-  []\n",
        ];
        for text in read {
            assert!(same(text), "the fast path should read {text:?}");
        }
        let refused = [
            "a: 1",
            "a: 1 # comment\n",
            "a: '#x'\n",
            "a: [1, 2]\n",
            "a: {}x\n",
            "a: [ ]\n",
            "{\"a\": 1}\n",
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: b\n  c\n",
            "a: \"x\\ty\"\n",
            "a: 'it''s'\n",
            "a: \"multi\n  line\"\n",
            "a:\tb\n",
            "a: 1\r\n",
            "a: é\n",
            "a: b: c\n",
            "a: 1\n  b: 2\n",
            "a:\n    b: 1\n  c: 2\n",
            "- a\n  b\n",
            "-\n  a: 1\n",
            "a:\n-\n",
            "? a\n: b\n",
            "\"a\": 1\n",
            "a : 1\n",
            "a: 1 \n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n...\n",
            "--- a: 1\n",
            "scalar\n",
            "a: x:\n",
            "a: - b\n",
            "a:\n  - b\n  c: 1\n",
            "a: 1\n- b\n",
        ];
        for text in refused {
            assert!(!same(text), "the fast path should leave {text:?} to yaml-rust2");
        }
    }

    #[test]
    fn reads_the_repository_manifests_as_yaml_rust2_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["tests", "examples"] {
            collect(&root.join(dir), &mut files);
        }
        let read = files.iter().filter(|f| same(&std::fs::read_to_string(f).unwrap_or_default())).count();
        assert!(read * 2 > files.len(), "the fast path read only {read} of {} manifests", files.len());
    }

    fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, files);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                files.push(path);
            }
        }
    }

    /// SplitMix64: deterministic choices for generated texts.
    struct Choices(u64);

    impl Choices {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const KEYS: &[&str] = &["a", "b", "port", "k8s:io.kubernetes.pod.namespace", "80", "true", "app.io/name", "x-y"];
    const SCALARS: &[&str] = &[
        "x",
        "80",
        "-1",
        "true",
        "null",
        "~",
        "a b",
        "\"q\"",
        "'s'",
        "\"\"",
        "k8s:io.x",
        "a:b",
        "0x1F",
        "1.5",
        "1e3",
        ".5",
        "+1",
        "0o17",
        "a,b",
        "(x)",
        "http://a/b",
        "fd00::1",
        "10.0.0.0/8",
        "-x",
        "a#b",
        "x:",
        "a: b",
        "[a]",
        "&a x",
        "*a",
        "!t x",
        "@x",
        "%x",
        "? x",
        "'it''s'",
        "\"a\\\"b\"",
        "-",
        "- x",
        "|",
        "{}",
        "[]",
        "{ }",
        "[a, b]",
    ];

    /// Lines of a random block collection whose entries start at `indent`.
    fn collection(c: &mut Choices, indent: usize, depth: usize, out: &mut Vec<String>) {
        let pad = " ".repeat(indent);
        let seq = c.below(3) == 0;
        for _ in 0..1 + c.below(3) {
            let start = out.len();
            let (head, child_indent) = if seq {
                (format!("{pad}-{}", " ".repeat(1 + c.below(2))), indent + 2 + c.below(2))
            } else {
                (format!("{pad}{}:", c.pick(KEYS)), indent + 1 + c.below(3))
            };
            match (c.below(if depth > 0 { 4 } else { 2 }), seq) {
                (0, _) => out.push(format!("{head}{}{}", if seq { "" } else { " " }, c.pick(SCALARS))),
                (1, _) => out.push(head.trim_end().to_string()), // null
                (2, true) => {
                    // The item's collection starts on the dash's line.
                    let width = head.len();
                    collection(c, width, depth - 1, out);
                    out[start] = format!("{head}{}", &out[start][width..]);
                }
                (2, false) => {
                    out.push(head);
                    let indentless = c.below(2) == 0;
                    collection(c, if indentless { indent } else { child_indent }, depth - 1, out);
                }
                _ => {
                    out.push(head);
                    collection(c, child_indent, depth - 1, out);
                }
            }
            if c.below(6) == 0 {
                out.push(if c.below(2) == 0 { String::new() } else { format!("{}# note", " ".repeat(c.below(6))) });
            }
        }
    }

    #[test]
    fn reads_generated_block_texts_as_yaml_rust2_does() {
        let mut read = 0;
        for seed in 0..3000 {
            let mut c = Choices(seed);
            let mut lines = Vec::new();
            if c.below(3) == 0 {
                lines.push("---".to_string());
            }
            for document in 0..1 + c.below(3) {
                if document > 0 {
                    lines.push("---".to_string());
                }
                if c.below(8) > 0 {
                    let indent = c.below(8) / 7;
                    collection(&mut c, indent, 3, &mut lines);
                }
            }
            let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            read += usize::from(same(&text));
        }
        assert!(read > 500, "the fast path read only {read} generated texts");
    }
}
