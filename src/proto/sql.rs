//! SQL text, as the SQL database decoders (PostgreSQL, MySQL/MariaDB) need it: a fast
//! single-pass tokenizer (not a parser) that finds a statement's operation and main table
//! (`db.operation.name`, `db.collection.name`, `db.query.summary`), splits a
//! multi-statement text, and normalizes a statement for the opt-in `db.query.text`
//! (every literal replaced by `?`, comments dropped, whitespace collapsed, length bounded).
//!
//! The tokenizer knows what can hide a literal or a semicolon: `'strings'` (`''` escapes;
//! a backslash escapes too where the dialect says so), `E'..'` strings with backslash
//! escapes, `"quoted identifiers"`, `` `backtick identifiers` ``, `$tag$..$tag$` dollar
//! quoting, numbers, `--` and `/* */` comments (nested in PostgreSQL), `#` comments
//! (MySQL). Everything is linear in the text and never panics: an unterminated string or
//! comment runs to the end of the text (so a literal cut short is still a literal).
//!
//! No literal reaches anything this module returns: the summary holds keywords and
//! identifiers only, and the normalized text has `?` in place of every string, number
//! and dollar-quoted body.

/// How the text is read where SQL dialects differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Neither in particular: backslash escapes in strings, `"..."` taken for a string in
    /// normalized text (it is a string in MySQL, an identifier elsewhere: replacing it
    /// keeps a MySQL literal out at the cost of a PostgreSQL column name).
    #[default]
    Generic,
    /// PostgreSQL: `'..'` without backslash escapes (standard_conforming_strings),
    /// `E'..'` with them, nested `/* */`, `$tag$` quoting, `$1` parameters, `"ident"`.
    Postgres,
    /// MySQL and MariaDB: backslash escapes, `"..."` strings, `#` and `-- ` comments,
    /// `` `ident` ``.
    MySql,
}

/// What a statement is: the operation keyword and, where easy to find, its main table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqlSummary<'a> {
    /// The operation, upper case: the first keyword (`SELECT`, `INSERT`, `BEGIN`), with
    /// its object for data definition (`CREATE TABLE`, `DROP INDEX`); for `WITH`, the
    /// main statement's. None when the first word is not a statement keyword.
    pub operation: Option<&'static str>,
    /// The main table: `FROM`/`INTO`/`UPDATE`/`TABLE` x, schema-qualified as written,
    /// quotes stripped when the name is one quoted identifier (a qualified name with
    /// quotes in it is kept as written). None for a subquery or where it is not easy.
    pub collection: Option<&'a str>,
}

/// A token's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// A quoted identifier (`"x"`, `` `x` ``); `start..end` includes the quotes.
    Quoted,
    /// A string literal (any form, dollar quoting included).
    Str,
    Number,
    /// A placeholder: `$1`, `?`, `:name`.
    Param,
    /// One byte of punctuation or operator.
    Punct(u8),
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// Whitespace or a comment came before it.
    space: bool,
}

struct Lexer<'a> {
    b: &'a [u8],
    i: usize,
    d: Dialect,
    /// Bytes at and after this index have not been looked at (an upper bound: every
    /// token looks at most two bytes past its end). What the caller concluded depends on
    /// `b[..far]` alone, and on the text's length when `far > b.len()`: `SummaryMemo`
    /// relies on it.
    far: usize,
}

#[inline]
fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

#[inline]
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, d: Dialect) -> Self {
        Lexer {
            b: text.as_bytes(),
            i: 0,
            d,
            far: 0,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// Skip whitespace and comments; true when there were any.
    fn skip_space(&mut self) -> bool {
        let start = self.i;
        loop {
            let c = self.at(self.i);
            if self.i >= self.b.len() {
                break;
            }
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'-' && self.at(self.i + 1) == b'-' {
                // MySQL wants a space after `--`; `1--1` is arithmetic there.
                if self.d == Dialect::MySql
                    && !matches!(self.at(self.i + 2), b' ' | b'\t' | b'\n' | b'\r' | 0)
                {
                    break;
                }
                self.skip_line();
            } else if c == b'#' && self.d != Dialect::Postgres {
                // MySQL's line comment; in the generic dialect too, on the safe side.
                self.skip_line();
            } else if c == b'/' && self.at(self.i + 1) == b'*' {
                self.skip_block_comment();
            } else {
                break;
            }
        }
        self.i > start
    }

    fn skip_line(&mut self) {
        match self.b[self.i..].iter().position(|&c| c == b'\n') {
            Some(n) => self.i += n + 1,
            None => self.i = self.b.len(),
        }
    }

    /// `/* ... */`, nested in PostgreSQL (the SQL standard); unterminated runs to the end.
    fn skip_block_comment(&mut self) {
        let nested = self.d == Dialect::Postgres;
        let mut depth = 0u32;
        let mut i = self.i;
        let n = self.b.len();
        while i < n {
            if self.b[i] == b'/' && self.at(i + 1) == b'*' {
                if depth == 0 || nested {
                    depth += 1;
                }
                i += 2;
            } else if self.b[i] == b'*' && self.at(i + 1) == b'/' {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.i = i;
                    return;
                }
            } else {
                i += 1;
            }
        }
        self.i = n;
    }

    /// A quoted run from `self.i` (at the opening quote): doubled quotes escape it, and
    /// so does a backslash when `backslash`. Ends after the closing quote or at the end.
    fn skip_quoted(&mut self, q: u8, backslash: bool) {
        let mut i = self.i + 1;
        let n = self.b.len();
        while i < n {
            let c = self.b[i];
            if c == b'\\' && backslash {
                i += 2;
            } else if c == q {
                if self.at(i + 1) == q {
                    i += 2;
                } else {
                    self.i = i + 1;
                    return;
                }
            } else {
                i += 1;
            }
        }
        self.i = n;
    }

    /// `$tag$...$tag$` from `self.i` (at the first `$`), if it is one: true when taken.
    fn dollar_quote(&mut self) -> bool {
        let b = self.b;
        let mut j = self.i + 1;
        if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        while j < b.len() && b[j] != b'$' {
            // A tag is an identifier (at most 63 bytes in PostgreSQL): bounding it keeps the
            // search for the closing tag linear.
            if j - self.i > 64 || !(b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
                self.far = self.far.max(j + 1);
                return false;
            }
            j += 1;
        }
        if j >= b.len() {
            self.far = self.far.max(j + 1);
            return false;
        }
        let tag = &b[self.i..=j];
        let body = j + 1;
        // Find the closing tag: memchr-like scan for `$`, then compare.
        let mut k = body;
        while let Some(p) = b[k..].iter().position(|&c| c == b'$') {
            let at = k + p;
            if b[at..].starts_with(tag) {
                self.i = at + tag.len();
                return true;
            }
            k = at + 1;
        }
        self.i = b.len();
        true
    }

    fn number(&mut self) {
        let b = self.b;
        let mut i = self.i;
        if b[i] == b'0' && matches!(self.at(i + 1), b'x' | b'X' | b'b' | b'B' | b'o' | b'O') {
            i += 2;
            while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'_') {
                i += 1;
            }
            self.i = i;
            return;
        }
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_' || b[i] == b'.') {
            i += 1;
        }
        if matches!(self.at(i), b'e' | b'E') {
            let mut j = i + 1;
            if matches!(self.at(j), b'+' | b'-') {
                j += 1;
            }
            if self.at(j).is_ascii_digit() {
                i = j;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        self.i = i;
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.token();
        // A token looks at most two bytes past where it ends (`--`, `/*`, `e+1`, `E'`);
        // at the end of the text this passes the length, which says the end was seen.
        self.far = self.far.max(self.i + 2);
        t
    }

    fn token(&mut self) -> Option<Tok> {
        let space = self.skip_space();
        let start = self.i;
        let c = *self.b.get(start)?;
        let b = self.b;
        let kind = match c {
            b'\'' => {
                let bs = self.d != Dialect::Postgres;
                self.skip_quoted(b'\'', bs);
                Kind::Str
            }
            b'"' => {
                let bs = self.d != Dialect::Postgres;
                self.skip_quoted(b'"', bs);
                if self.d == Dialect::Postgres {
                    Kind::Quoted
                } else if self.d == Dialect::MySql {
                    Kind::Str
                } else {
                    // Generic: an identifier to the summary, a string to normalize (which
                    // asks `Lexer::d` itself).
                    Kind::Quoted
                }
            }
            b'`' => {
                self.skip_quoted(b'`', false);
                Kind::Quoted
            }
            b'$' if self.d != Dialect::MySql => {
                if self.at(start + 1).is_ascii_digit() {
                    let mut i = start + 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    self.i = i;
                    Kind::Param
                } else if self.dollar_quote() {
                    Kind::Str
                } else {
                    self.i += 1;
                    Kind::Punct(b'$')
                }
            }
            b'0'..=b'9' => {
                self.number();
                Kind::Number
            }
            b'.' if self.at(start + 1).is_ascii_digit() => {
                self.number();
                Kind::Number
            }
            b'?' => {
                self.i += 1;
                Kind::Param
            }
            b':' if is_word_start(self.at(start + 1)) && self.at(start.wrapping_sub(1)) != b':' => {
                let mut i = start + 1;
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                self.i = i;
                Kind::Param
            }
            c if is_word_start(c) || (c == b'$' && self.d == Dialect::MySql) => {
                // A one-letter prefix glued to a quote is part of the string: E'..' (escapes),
                // B'..', X'..', N'..'.
                if matches!(c, b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N')
                    && self.at(start + 1) == b'\''
                {
                    self.i = start + 1;
                    let bs = self.d != Dialect::Postgres || matches!(c, b'e' | b'E');
                    self.skip_quoted(b'\'', bs);
                    Kind::Str
                } else {
                    let mut i = start + 1;
                    while i < b.len() && is_word_byte(b[i]) {
                        i += 1;
                    }
                    self.i = i;
                    Kind::Word
                }
            }
            c => {
                self.i += 1;
                Kind::Punct(c)
            }
        };
        Some(Tok {
            kind,
            start,
            end: self.i,
            space,
        })
    }
}

/// Statement keywords: the operation names podtap reports.
const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "REPLACE",
    "UPSERT",
    "VALUES",
    "TABLE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "BEGIN",
    "START",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "END",
    "ABORT",
    "CALL",
    "EXEC",
    "EXECUTE",
    "PREPARE",
    "DEALLOCATE",
    "SET",
    "SHOW",
    "RESET",
    "COPY",
    "GRANT",
    "REVOKE",
    "LOCK",
    "UNLOCK",
    "VACUUM",
    "ANALYZE",
    "ANALYSE",
    "EXPLAIN",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "DISCARD",
    "DO",
    "COMMENT",
    "CLUSTER",
    "REINDEX",
    "REFRESH",
    "CHECKPOINT",
    "LOAD",
    "USE",
    "DESCRIBE",
    "DESC",
    "OPTIMIZE",
    "RENAME",
    "HANDLER",
    "FLUSH",
    "KILL",
    "CHECKSUM",
    "REPAIR",
    "INSTALL",
    "UNINSTALL",
    "XA",
    "PURGE",
    "IMPORT",
    "SECURITY",
    "REASSIGN",
    "WITH",
];

/// `CREATE`/`ALTER`/`DROP` objects that name the operation.
const OBJECTS: &[&str] = &[
    "TABLE",
    "INDEX",
    "VIEW",
    "SCHEMA",
    "DATABASE",
    "SEQUENCE",
    "FUNCTION",
    "PROCEDURE",
    "TRIGGER",
    "EXTENSION",
    "TYPE",
    "ROLE",
    "USER",
    "DOMAIN",
    "EVENT",
    "SERVER",
    "POLICY",
    "PUBLICATION",
    "SUBSCRIPTION",
    "RULE",
    "AGGREGATE",
    "COLLATION",
    "TABLESPACE",
];

macro_rules! ddl {
    ($($verb:literal),*) => {
        &[$( [
            concat!($verb, " TABLE"), concat!($verb, " INDEX"), concat!($verb, " VIEW"),
            concat!($verb, " SCHEMA"), concat!($verb, " DATABASE"), concat!($verb, " SEQUENCE"),
            concat!($verb, " FUNCTION"), concat!($verb, " PROCEDURE"), concat!($verb, " TRIGGER"),
            concat!($verb, " EXTENSION"), concat!($verb, " TYPE"), concat!($verb, " ROLE"),
            concat!($verb, " USER"), concat!($verb, " DOMAIN"), concat!($verb, " EVENT"),
            concat!($verb, " SERVER"), concat!($verb, " POLICY"), concat!($verb, " PUBLICATION"),
            concat!($verb, " SUBSCRIPTION"), concat!($verb, " RULE"), concat!($verb, " AGGREGATE"),
            concat!($verb, " COLLATION"), concat!($verb, " TABLESPACE"),
        ] ),*]
    };
}
/// `OBJECTS` after each verb, in the same order.
const DDL: &[[&str; 23]] = ddl!("CREATE", "ALTER", "DROP");

fn lookup(word: &[u8], table: &[&'static str]) -> Option<usize> {
    if word.len() > 12 {
        return None;
    }
    table
        .iter()
        .position(|k| k.len() == word.len() && k.as_bytes().eq_ignore_ascii_case(word))
}

#[inline]
fn is_kw(word: &[u8], kw: &str) -> bool {
    word.eq_ignore_ascii_case(kw.as_bytes())
}

/// The statement summary of the first statement of `text` (generic dialect).
pub fn summarize(text: &str) -> SqlSummary<'_> {
    summarize_in(Dialect::Generic, text)
}

/// The statement summary of the first statement of `text`, read in dialect `d`.
pub fn summarize_in(d: Dialect, text: &str) -> SqlSummary<'_> {
    summarize_tracked(d, text).0
}

/// The last summary a connection made, with the bytes of text it depended on.
///
/// Applications send the same statement shapes over and over with other literals
/// (`SELECT .. FROM t1 WHERE id = '15'`, then `'16'`): the summary only ever depends on
/// the text up to the main table's name, which the next statement usually repeats. A
/// text that starts with those bytes gets the same summary from one comparison instead of
/// a tokenizer pass. The result is exactly what [`summarize_in`] gives (a property test
/// checks it for random texts after random others). One per connection, at most
/// [`SummaryMemo::MAX_KEY`] bytes on the heap (counted in the decoder's heap).
#[derive(Clone, Debug, Default)]
pub struct SummaryMemo {
    key: Vec<u8>,
    /// The summary looked at the text's end: only the same text gives it again.
    ended: bool,
    operation: Option<&'static str>,
    collection: Option<(usize, usize)>,
}

impl SummaryMemo {
    /// Longer dependencies are not remembered (the comparison would cost what it saves
    /// and the memory would grow with what a client sends).
    pub const MAX_KEY: usize = 192;

    /// [`summarize_in`] of `text`, from the memo when `text` repeats what the last
    /// summary depended on.
    pub fn summarize<'t>(&mut self, d: Dialect, text: &'t str) -> SqlSummary<'t> {
        if self.repeats(text.as_bytes()) {
            return SqlSummary {
                operation: self.operation,
                collection: self.collection.map(|(s, e)| &text[s..e]),
            };
        }
        self.learn(d, text)
    }

    /// Whether raw statement bytes `b` repeat what the last summary depended on: then
    /// the summary of `b`'s text (valid UTF-8 as far as it goes) is the last one. The
    /// key ends at a character boundary, so `b`'s valid part covers all of it.
    pub fn repeats(&self, b: &[u8]) -> bool {
        let k = self.key.len();
        k > 0 && b.len() >= k && (!self.ended || b.len() == k) && b[..k] == self.key[..]
    }

    /// [`summarize_in`] of `text`, remembered for the next statement.
    pub fn learn<'t>(&mut self, d: Dialect, text: &'t str) -> SqlSummary<'t> {
        let b = text.as_bytes();
        let (s, far) = summarize_tracked(d, text);
        let mut n = far.min(b.len());
        while !text.is_char_boundary(n) {
            n += 1;
        }
        self.key.clear();
        if n <= Self::MAX_KEY {
            self.key.extend_from_slice(&b[..n]);
            self.ended = far > b.len();
            self.operation = s.operation;
            let base = text.as_ptr() as usize;
            self.collection = s.collection.map(|c| {
                let at = c.as_ptr() as usize - base;
                (at, at + c.len())
            });
        }
        s
    }

    /// Heap bytes held (for the decoder's heap accounting).
    pub fn heap_bytes(&self) -> usize {
        self.key.capacity()
    }
}

/// [`summarize_in`], and how far into `text` it looked (see `Lexer::far`).
fn summarize_tracked(d: Dialect, text: &str) -> (SqlSummary<'_>, usize) {
    let mut lx = Lexer::new(text, d);
    let s = summarize_lexed(&mut lx, text);
    (s, lx.far)
}

fn summarize_lexed<'a>(lx: &mut Lexer<'a>, text: &'a str) -> SqlSummary<'a> {
    let mut s = SqlSummary::default();
    // The first word, past opening parentheses: `(SELECT ...) UNION ...`.
    let first = loop {
        match lx.next() {
            Some(t) if t.kind == Kind::Punct(b'(') => continue,
            Some(t) if t.kind == Kind::Word => break t,
            _ => return s,
        }
    };
    let b = text.as_bytes();
    let mut word = &b[first.start..first.end];
    if is_kw(word, "WITH") {
        // The main statement: the first statement keyword outside the CTE bodies (which are
        // all in parentheses).
        let mut depth = 0i32;
        let main = loop {
            let Some(t) = lx.next() else { return s };
            match t.kind {
                Kind::Punct(b'(') => depth += 1,
                Kind::Punct(b')') => depth -= 1,
                Kind::Punct(b';') if depth <= 0 => return s,
                Kind::Word if depth <= 0 => {
                    let w = &b[t.start..t.end];
                    if ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES"]
                        .iter()
                        .any(|k| is_kw(w, k))
                    {
                        break t;
                    }
                }
                _ => {}
            }
        };
        word = &b[main.start..main.end];
    }
    let Some(op) = lookup(word, OPERATIONS) else {
        return s;
    };
    let op = OPERATIONS[op];
    s.operation = Some(op);
    match op {
        "SELECT" => s.collection = after_keyword(lx, text, "FROM"),
        "INSERT" | "REPLACE" | "MERGE" => {
            // INSERT [IGNORE|LOW_PRIORITY...] INTO x; MySQL allows INSERT x.
            s.collection = after_keyword(lx, text, "INTO")
        }
        "UPDATE" => {
            // UPDATE [ONLY|LOW_PRIORITY|IGNORE] x
            s.collection = name_after(lx, text, &["ONLY", "LOW_PRIORITY", "IGNORE"]);
        }
        "DELETE" => s.collection = after_keyword(lx, text, "FROM"),
        "TABLE" | "COPY" => s.collection = name_after(lx, text, &["ONLY", "BINARY"]),
        "TRUNCATE" | "LOCK" => {
            s.collection = name_after(lx, text, &["TABLE", "TABLES", "ONLY"]);
        }
        "CREATE" | "ALTER" | "DROP" => {
            let verb = match op {
                "CREATE" => 0,
                "ALTER" => 1,
                _ => 2,
            };
            // Words between the verb and the object: OR REPLACE, TEMP, UNIQUE, ...
            for _ in 0..6 {
                let Some(t) = lx.next() else { break };
                if t.kind != Kind::Word {
                    break;
                }
                let w = &b[t.start..t.end];
                if let Some(o) = lookup(w, OBJECTS) {
                    s.operation = Some(DDL[verb][o]);
                    if o == 0 {
                        s.collection = name_after(lx, text, &["IF", "NOT", "EXISTS", "ONLY"]);
                    }
                    break;
                }
                if ![
                    "OR",
                    "REPLACE",
                    "TEMP",
                    "TEMPORARY",
                    "UNLOGGED",
                    "GLOBAL",
                    "LOCAL",
                    "UNIQUE",
                    "MATERIALIZED",
                    "DEFINER",
                    "ALGORITHM",
                    "SQL",
                    "SECURITY",
                    "FOREIGN",
                    "CONSTRAINT",
                    "RECURSIVE",
                    "ONLINE",
                    "OFFLINE",
                ]
                .iter()
                .any(|k| is_kw(w, k))
                {
                    break;
                }
            }
        }
        _ => {}
    }
    s
}

/// The table name after keyword `kw` at this statement's top level (not inside
/// parentheses); None at a `;` or when `kw` is followed by a subquery.
fn after_keyword<'a>(lx: &mut Lexer<'a>, text: &'a str, kw: &str) -> Option<&'a str> {
    let b = text.as_bytes();
    let mut depth = 0i32;
    loop {
        let t = lx.next()?;
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth -= 1,
            Kind::Punct(b';') if depth <= 0 => return None,
            Kind::Word if depth == 0 && is_kw(&b[t.start..t.end], kw) => {
                return name_after(lx, text, &["ONLY"]);
            }
            _ => {}
        }
    }
}

/// The (possibly qualified) name at the lexer, past any of the words in `skip`.
fn name_after<'a>(lx: &mut Lexer<'a>, text: &'a str, skip: &[&str]) -> Option<&'a str> {
    let b = text.as_bytes();
    let mut t = lx.next()?;
    let mut skipped = 0;
    while t.kind == Kind::Word && skipped < 4 && skip.iter().any(|k| is_kw(&b[t.start..t.end], k)) {
        t = lx.next()?;
        skipped += 1;
    }
    if !matches!(t.kind, Kind::Word | Kind::Quoted) {
        return None;
    }
    let (start, mut end) = (t.start, t.end);
    let mut parts = 1;
    // `schema.table`, `db.schema.table`: dots with no space around them.
    loop {
        let save = lx.i;
        match lx.next() {
            Some(dot) if dot.kind == Kind::Punct(b'.') && !dot.space => match lx.next() {
                Some(n) if matches!(n.kind, Kind::Word | Kind::Quoted) && !n.space => {
                    end = n.end;
                    parts += 1;
                }
                _ => {
                    lx.i = save;
                    break;
                }
            },
            _ => {
                lx.i = save;
                break;
            }
        }
    }
    let name = &text[start..end];
    if parts == 1 && t.kind == Kind::Quoted && name.len() >= 2 {
        return Some(&name[1..name.len() - 1]);
    }
    Some(name)
}

/// `db.query.summary`: the operation and the collection (`SELECT users`), the operation
/// alone when there is no collection, empty when there is no operation.
pub fn query_summary(s: &SqlSummary) -> String {
    match (s.operation, s.collection) {
        (Some(op), Some(c)) => {
            let mut out = String::with_capacity(op.len() + 1 + c.len());
            out.push_str(op);
            out.push(' ');
            out.push_str(c);
            out
        }
        (Some(op), None) => op.to_string(),
        (None, _) => String::new(),
    }
}

/// The statements of a multi-statement text, split at the semicolons outside strings,
/// comments, quoted identifiers and dollar quotes; each trimmed, empty ones left out.
pub fn statements(d: Dialect, text: &str) -> Statements<'_> {
    Statements {
        lx: Lexer::new(text, d),
        text,
    }
}

/// Iterator of [`statements`].
pub struct Statements<'a> {
    lx: Lexer<'a>,
    text: &'a str,
}

impl<'a> Iterator for Statements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let first = self.lx.next()?;
            if first.kind == Kind::Punct(b';') {
                continue;
            }
            let mut end = first.end;
            while let Some(t) = self.lx.next() {
                if t.kind == Kind::Punct(b';') {
                    break;
                }
                end = t.end;
            }
            return Some(&self.text[first.start..end]);
        }
    }
}

/// What marks normalized text cut at its length bound.
pub const CUT_MARK: &str = "...";

/// Append the normalized form of `text` to `out` (generic dialect): see [`normalize_in`].
pub fn normalize(text: &str, max_bytes: usize, out: &mut String) {
    normalize_in(Dialect::Generic, text, max_bytes, out)
}

/// Append the normalized form of `text` to `out`, for `db.query.text`: every literal
/// (string, number, dollar-quoted body; in the generic and MySQL dialects `"..."` too)
/// becomes `?`, comments are dropped, whitespace collapses to one space. At most
/// `max_bytes` are appended: a longer result is cut at a character boundary and ends with
/// [`CUT_MARK`] (within the bound).
pub fn normalize_in(d: Dialect, text: &str, max_bytes: usize, out: &mut String) {
    let base = out.len();
    let limit = base + max_bytes;
    let mut lx = Lexer::new(text, d);
    let mut first = true;
    while let Some(t) = lx.next() {
        let piece = match t.kind {
            Kind::Str | Kind::Number => "?",
            Kind::Quoted if d != Dialect::Postgres && text.as_bytes()[t.start] == b'"' => "?",
            _ => &text[t.start..t.end],
        };
        let sep = t.space && !first;
        first = false;
        if out.len() + usize::from(sep) + piece.len() > limit {
            // Whatever fits of this piece, then the mark, all within the bound.
            let room = limit.saturating_sub(CUT_MARK.len());
            if sep && out.len() < room {
                out.push(' ');
            }
            if out.len() < room {
                let mut n = room - out.len();
                while n > 0 && !piece.is_char_boundary(n.min(piece.len())) {
                    n -= 1;
                }
                out.push_str(&piece[..n.min(piece.len())]);
            }
            // The bound may be shorter than the mark itself.
            if out.len() > room {
                let mut n = room;
                while n > base && !out.is_char_boundary(n) {
                    n -= 1;
                }
                out.truncate(n.max(base));
            }
            if out.len() + CUT_MARK.len() <= limit {
                out.push_str(CUT_MARK);
            }
            return;
        }
        if sep {
            out.push(' ');
        }
        out.push_str(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(text: &str) -> (Option<&'static str>, Option<&str>) {
        let s = summarize_in(Dialect::Postgres, text);
        (s.operation, s.collection)
    }

    fn norm(d: Dialect, text: &str) -> String {
        let mut s = String::new();
        normalize_in(d, text, 1000, &mut s);
        s
    }

    /// Pieces that exercise every look-ahead of the tokenizer: comments, quotes, dollar
    /// quoting, exponents, qualified names, parentheses, statement ends.
    const PIECES: &[&str] = &[
        "SELECT", "select", " ", "\n", "a", "t1", ",", "FROM", "from", "INTO", "INSERT", "UPDATE",
        "WITH", "CREATE", "TABLE", "IF", "NOT", "EXISTS", ".", "x", "'s'", "'", "\"q\"", "`b`",
        "--", "-- ", "#", "/*", "*/", "$$", "$a$", "$1", "$", "(", ")", ";", "1", "1e", "e+5",
        "E'", "ONLY", "?", ":p", "::", "0x", "\\",
    ];

    proptest::proptest! {
        /// A memo gives exactly what the tokenizer gives, for any text after any other:
        /// the bytes it says a summary depended on are all the summary depended on.
        #[test]
        fn a_memo_gives_what_the_tokenizer_gives(
            first in proptest::collection::vec(0..PIECES.len(), 0..12),
            second in proptest::collection::vec(0..PIECES.len(), 0..12),
            shared in 0usize..12,
            dialect in 0u8..3,
        ) {
            let d = [Dialect::Generic, Dialect::Postgres, Dialect::MySql][dialect as usize];
            let a: String = first.iter().map(|&i| PIECES[i]).collect();
            // The second text often starts like the first, where the memo answers.
            let n = shared.min(first.len());
            let b: String = first[..n].iter().chain(&second).map(|&i| PIECES[i]).collect();
            let mut memo = SummaryMemo::default();
            proptest::prop_assert_eq!(memo.summarize(d, &a), summarize_in(d, &a));
            proptest::prop_assert_eq!(memo.summarize(d, &b), summarize_in(d, &b));
            proptest::prop_assert_eq!(memo.summarize(d, &b), summarize_in(d, &b));
            proptest::prop_assert_eq!(memo.summarize(d, &a), summarize_in(d, &a));
            proptest::prop_assert!(memo.heap_bytes() <= 2 * SummaryMemo::MAX_KEY);
        }
    }

    #[test]
    fn a_memo_answers_a_repeated_shape_and_not_a_changed_one() {
        let d = Dialect::MySql;
        let mut memo = SummaryMemo::default();
        let s = memo.summarize(d, "SELECT a,b FROM t1 WHERE id = '15'");
        assert_eq!((s.operation, s.collection), (Some("SELECT"), Some("t1")));
        // Up to the word after the name (a `.` there would qualify it), short of the
        // literal.
        assert_eq!(memo.key, b"SELECT a,b FROM t1 WHERE i");
        let s = memo.summarize(d, "SELECT a,b FROM t1 WHERE id = '16'");
        assert_eq!(s.collection, Some("t1"));
        let s = memo.summarize(d, "SELECT a,b FROM t1.x WHERE id = '16'");
        assert_eq!(s.collection, Some("t1.x"));
        let s = memo.summarize(d, "BEGIN");
        assert_eq!((s.operation, s.collection), (Some("BEGIN"), None));
        // `BEGIN` looked at its end: `BEGIN WORK` is another text.
        assert!(memo.ended);
        let s = memo.summarize(d, "BEGINNING");
        assert_eq!(s.operation, None);
        // The look-ahead past `t1` ends inside `€`: the key takes the whole character,
        // so bytes that cut it short are not taken for a repeat.
        memo.summarize(d, "UPDATE t1 'x'€ y");
        assert_eq!(memo.key, "UPDATE t1 'x'€".as_bytes());
        assert!(memo.repeats("UPDATE t1 'x'€ z".as_bytes()));
        assert!(!memo.repeats(b"UPDATE t1 'x'\xe2\x82\xff"));
    }

    #[test]
    fn operations_and_collections() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "SELECT * FROM users WHERE id = 1",
                Some("SELECT"),
                Some("users"),
            ),
            (
                "select a from public.users u",
                Some("SELECT"),
                Some("public.users"),
            ),
            (r#"SELECT 1 FROM "Users""#, Some("SELECT"), Some("Users")),
            (
                r#"SELECT 1 FROM public."Users""#,
                Some("SELECT"),
                Some(r#"public."Users""#),
            ),
            ("SELECT 1", Some("SELECT"), None),
            ("SELECT (SELECT x FROM a) FROM b", Some("SELECT"), Some("b")),
            (
                "SELECT extract(year FROM d) FROM t",
                Some("SELECT"),
                Some("t"),
            ),
            ("SELECT * FROM (SELECT 1) s", Some("SELECT"), None),
            (
                "  -- hi\n /* c /* nested */ */ SELECT 1 FROM t",
                Some("SELECT"),
                Some("t"),
            ),
            (
                "(SELECT 1 FROM t) UNION (SELECT 2)",
                Some("SELECT"),
                Some("t"),
            ),
            (
                "INSERT INTO pgbench_history (tid) VALUES (1)",
                Some("INSERT"),
                Some("pgbench_history"),
            ),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + -4",
                Some("UPDATE"),
                Some("pgbench_accounts"),
            ),
            ("UPDATE ONLY t SET a=1", Some("UPDATE"), Some("t")),
            ("DELETE FROM s.t WHERE x", Some("DELETE"), Some("s.t")),
            (
                "CREATE TABLE IF NOT EXISTS foo (a int)",
                Some("CREATE TABLE"),
                Some("foo"),
            ),
            (
                "create temp table foo (a int)",
                Some("CREATE TABLE"),
                Some("foo"),
            ),
            ("CREATE UNIQUE INDEX i ON t (a)", Some("CREATE INDEX"), None),
            ("DROP TABLE IF EXISTS a, b", Some("DROP TABLE"), Some("a")),
            (
                "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
                Some("CREATE FUNCTION"),
                None,
            ),
            (
                "ALTER TABLE ONLY t ADD COLUMN c int",
                Some("ALTER TABLE"),
                Some("t"),
            ),
            ("TRUNCATE TABLE a", Some("TRUNCATE"), Some("a")),
            (
                "COPY pgbench_accounts FROM stdin",
                Some("COPY"),
                Some("pgbench_accounts"),
            ),
            ("BEGIN", Some("BEGIN"), None),
            ("commit;", Some("COMMIT"), None),
            ("CALL p(1)", Some("CALL"), None),
            ("SET search_path = x", Some("SET"), None),
            (
                "WITH a AS (SELECT 1 FROM x), b AS (SELECT 2) SELECT * FROM a",
                Some("SELECT"),
                Some("a"),
            ),
            (
                "WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM r) INSERT INTO t SELECT * FROM r",
                Some("INSERT"),
                Some("t"),
            ),
            (
                "WITH d AS (DELETE FROM q RETURNING *) UPDATE t SET a = 1",
                Some("UPDATE"),
                Some("t"),
            ),
            ("frobnicate the widget", None, None),
            ("", None, None),
            ("   ", None, None),
            ("123", None, None),
            ("SELECT 'FROM x' FROM y", Some("SELECT"), Some("y")),
            ("SELECT $$ FROM x $$ FROM y", Some("SELECT"), Some("y")),
            (
                "SELECT $a$ FROM $b$ x $a$ FROM y",
                Some("SELECT"),
                Some("y"),
            ),
        ];
        for (q, op, coll) in cases {
            assert_eq!(sum(q), (*op, *coll), "{q}");
        }
        assert_eq!(
            summarize_in(
                Dialect::MySql,
                "SELECT * FROM `db`.`t` WHERE a = \"FROM z\""
            )
            .collection,
            Some("`db`.`t`")
        );
        assert_eq!(
            summarize_in(Dialect::MySql, "insert ignore into `t` values (1)").collection,
            Some("t")
        );
    }

    #[test]
    fn summary_strings() {
        let s = summarize("SELECT * FROM users");
        assert_eq!(query_summary(&s), "SELECT users");
        assert_eq!(query_summary(&summarize("BEGIN")), "BEGIN");
        assert_eq!(query_summary(&summarize("hello")), "");
    }

    #[test]
    fn normalization() {
        let pg = Dialect::Postgres;
        assert_eq!(
            norm(
                pg,
                "SELECT  *\n FROM t WHERE a = 'x''y' AND b=42 AND c = E'\\'' -- c\n"
            ),
            "SELECT * FROM t WHERE a = ? AND b=? AND c = ?"
        );
        assert_eq!(
            norm(pg, r#"SELECT "Col" FROM t WHERE x = $1 AND y = $$body$$"#),
            r#"SELECT "Col" FROM t WHERE x = $1 AND y = ?"#
        );
        assert_eq!(
            norm(pg, "select 1.5e10, .5, 0x1F, t1.a"),
            "select ?, ?, ?, t1.a"
        );
        assert_eq!(norm(pg, "a/**/b"), "a b");
        assert_eq!(norm(pg, "x::text"), "x::text");
        assert_eq!(
            norm(Dialect::MySql, r#"SELECT * FROM `t` WHERE a = "s\"x" # c"#),
            "SELECT * FROM `t` WHERE a = ?"
        );
        assert_eq!(norm(Dialect::MySql, "SELECT 'it\\'s' , 1"), "SELECT ? , ?");
        assert_eq!(norm(Dialect::Generic, r#"SELECT "x""#), "SELECT ?");
    }

    #[test]
    fn normalization_is_bounded_at_char_boundaries() {
        let text = "SELECT ééééé FROM tabletabletable WHERE a = 1";
        let mut full = String::new();
        normalize_in(Dialect::Postgres, text, 1000, &mut full);
        for max in 0..full.len() + 5 {
            let mut s = String::from("pre:");
            normalize_in(Dialect::Postgres, text, max, &mut s);
            assert!(s.len() - 4 <= max, "{max}: {s}");
            assert!(s.starts_with("pre:"));
            if max >= full.len() {
                assert_eq!(&s[4..], full);
            } else if max >= 3 {
                assert!(s.ends_with(CUT_MARK), "{max}: {s}");
            }
        }
        let mut s = String::new();
        normalize("SELECT 1", 100, &mut s);
        assert_eq!(s, "SELECT ?");
    }

    #[test]
    fn statements_split_outside_quotes() {
        let got: Vec<_> = statements(
            Dialect::Postgres,
            "BEGIN; SELECT ';' ; ;CREATE FUNCTION f() AS $x$ a; b $x$; -- ;\n COMMIT",
        )
        .collect();
        assert_eq!(
            got,
            [
                "BEGIN",
                "SELECT ';'",
                "CREATE FUNCTION f() AS $x$ a; b $x$",
                "COMMIT"
            ]
        );
        assert_eq!(statements(Dialect::Postgres, " ; -- x").count(), 0);
    }

    #[test]
    fn secrets_in_literals_never_come_out() {
        let secret = "hunter2SECRET";
        let texts = [
            format!("SELECT * FROM users WHERE password = '{secret}'"),
            format!("SELECT * FROM users WHERE password = E'\\'{secret}'"),
            format!("SELECT $q${secret}$q$ FROM t"),
            format!("SELECT $${secret}"),
            format!("SELECT '{secret}"),
            format!("INSERT INTO t VALUES ('a''{secret}')"),
            format!("SELECT 1 /* {secret} */ FROM t"),
            format!("SELECT 1 -- {secret}"),
            format!("SELECT 1 /* /* {secret} */ still comment */"),
            format!("UPDATE t SET a = 'x' WHERE b = '{secret}'; SELECT '{secret}'"),
        ];
        let my = [
            format!("SELECT * FROM t WHERE p = \"{secret}\""),
            format!("SELECT * FROM t WHERE p = 'a\\'{secret}'"),
            format!("SELECT 1 # {secret}"),
        ];
        let check = |d: Dialect, t: &str| {
            let s = summarize_in(d, t);
            assert!(!query_summary(&s).contains("hunter2"), "{t}");
            let mut n = String::new();
            normalize_in(d, t, 10_000, &mut n);
            assert!(!n.contains("hunter2"), "{d:?} {t}: {n}");
        };
        for t in &texts {
            check(Dialect::Postgres, t);
            check(Dialect::Generic, t);
        }
        for t in &my {
            check(Dialect::MySql, t);
            check(Dialect::Generic, t);
        }
    }

    #[test]
    fn random_text_never_panics_and_stays_linear() {
        let mut rng = crate::proto::test_rng(0x5eed_5a1d);
        let alphabet: &[&str] = &[
            "'", "\"", "`", "$", "$$", "$a$", "--", "/*", "*/", "#", "\\", "E'", ";", "(", ")",
            ".", "1", "e", "x", " ", "\n", "SELECT", "FROM", "WITH", "INTO", "é", "€", ":", "?",
            "CREATE", "TABLE", "a",
        ];
        for round in 0..3000 {
            let n = (rng() % 60) as usize;
            let mut t = String::new();
            for _ in 0..n {
                t.push_str(alphabet[(rng() % alphabet.len() as u64) as usize]);
            }
            for d in [Dialect::Generic, Dialect::Postgres, Dialect::MySql] {
                let s = summarize_in(d, &t);
                let _ = query_summary(&s);
                let mut out = String::new();
                let max = (rng() % 80) as usize;
                normalize_in(d, &t, max, &mut out);
                assert!(out.len() <= max, "round {round}");
                let total: usize = statements(d, &t).map(|s| s.len()).sum();
                assert!(total <= t.len());
            }
        }
        // Linear: a long text of many quotes and comments finishes promptly.
        let big = "SELECT '' /* */ $$ $$ \"\" ".repeat(100_000);
        let start = std::time::Instant::now();
        let mut out = String::new();
        normalize_in(Dialect::Postgres, &big, usize::MAX / 2, &mut out);
        let _ = summarize_in(Dialect::Postgres, &big);
        assert_eq!(statements(Dialect::Postgres, &big).count(), 1);
        assert!(start.elapsed().as_secs() < 5);
    }
}
