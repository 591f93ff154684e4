//! Answer extraction and voting: the one module every voting strategy and the
//! evaluation harness use.
//!
//! [`extract`] finds the final answer of a model output for a known answer kind,
//! [`extract_any`] when the kind is unknown. Both return a canonical string (see
//! [`normalize`]), so equal answers compare equal as strings: `"$1,234.50"` and
//! `"1234.5"` both give `"1234.5"`; `"3/4"`, `"\frac{3}{4}"` and `"0.75"` give `"0.75"`;
//! `"(b)"` and `"B"` give `"B"`. [`vote`] groups answers and picks the majority.
//!
//! Parsing is char-aware: model text is never sliced by byte index.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What kind of answer a question expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// A number (GSM8K, MATH with numeric answers, ...).
    Number,
    /// An option letter A-E.
    Choice,
    /// Yes or no (also true / false).
    YesNo,
    /// Free text, compared after normalisation.
    Text,
    /// A math answer written in LaTeX (MATH, MATH-500): `\frac{3}{4}`, `2\sqrt{5}`,
    /// `(-\infty, 0]`, `\text{east}`. Compared by [`normalize_math`] (numbers
    /// numerically, everything else as normalised LaTeX), see [`math_answers_equal`].
    Math,
    /// A program (HumanEval): the Python code of the reply ([`extract_code`]), judged by
    /// running unit tests, not by comparing text (the evaluation harness does that).
    Code,
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new($re).ok());
    };
}

// A number: optional sign, optional currency, thousands groups or plain digits,
// decimals, and an optional `/denominator`.
pattern!(
    NUMBER,
    r"(-)?(?:[$€£¥]\s?)?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:\s?/\s?(\d+(?:\.\d+)?))?"
);
// "The answer is", "Answer:", "**Final Answer:**", "answer would be" ...
pattern!(
    MARKER,
    r"(?i)\b(?:final\s+answer\b[\s*_]*(?:is\b|was\b|[:=])?|answer\b[\s*_]*(?:is\b|was\b|would\s+be\b|will\s+be\b|should\s+be\b|[:=]))[\s*_:]*"
);
// Markers that introduce an option letter: "correct option is", "choice:".
pattern!(
    CHOICE_MARKER,
    r"(?i)\b(?:option|choice)\b[\s*_]*(?:is\b|[:=])[\s*_:]*"
);
// An option letter at the start of a piece of text: "(B)", "B)", "B.", "option C".
pattern!(
    LEADING_LETTER,
    r"^[\s*_$\[]*(?i:(?:option|choice)\s*)?(?:\\text\{)?\(?([A-E])(?:[)\].:,*}\s]|$)"
);
// An option letter opening a whole output: "(B) ...", "B) ...", "B. ...", "**B:** ...".
pattern!(OPENING_LETTER, r"^[\s*_\[]*(?:\(([A-E])\)|([A-E])[).:])");
// A text that is nothing but a letter, in any case: "b", "(C).", "**D**".
pattern!(LONE_LETTER, r"^[\s*_$(\[]*([A-Ea-e])[\s*_$)\].:]*$");
// A parenthesised option letter anywhere.
pattern!(PAREN_LETTER, r"\(([A-E])\)");
// Option listings: "(A) ..." or "A) ..." at line starts.
pattern!(OPTION_LINE, r"(?m)^\s*\(?([A-E])[).:]\s");
pattern!(
    LEADING_YES_NO,
    r"(?i)^[\s*_$('\x22]*(?:\\text\{)?(yes|no|true|false)\b"
);
// A yes/no that stands alone at the start ("Yes, ...", "**No.**"), not "No idea".
pattern!(
    STANDALONE_YES_NO,
    r"(?i)^[\s*_$('\x22]*(yes|no|true|false)\b[*_]*\s*(?:[.,!;:)]|$)"
);
pattern!(ANY_YES_NO, r"(?i)\b(yes|no|true|false)\b");
pattern!(
    FRAC,
    r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}"
);
pattern!(FRAC_SHORT, r"\\[dt]?frac(\d)(\d)");
pattern!(
    TEXT_CMD,
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}"
);
pattern!(SPACES, r"\s+");
// A number with thousands separators and nothing else: `58,500`, `1,234.5`.
pattern!(THOUSANDS, r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$");
// A clock time and nothing else: `3:30`, `03:30 p.m.`, `5:45PM`, `14:05`.
pattern!(CLOCK, r"(?i)^(\d{1,2}):([0-5]\d)(?:\s*([ap])\.?\s*m\.?)?$");

/// The final answer of `text` for a question of `kind`, canonical (see [`normalize`]).
pub fn extract(text: &str, kind: AnswerKind) -> Option<String> {
    match kind {
        AnswerKind::Number => extract_number(text).map(canonical_number),
        AnswerKind::Choice => extract_choice(text).map(String::from),
        AnswerKind::YesNo => extract_yes_no(text).map(String::from),
        AnswerKind::Text => extract_text(text),
        AnswerKind::Math => extract_math(text),
        AnswerKind::Code => extract_code(text),
    }
}

/// The fenced blocks of `text` in order, without their fence lines (the info string,
/// such as `python`, goes with the opening fence); an unclosed fence runs to the end.
pub fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(lines) => blocks.push(lines.join("\n")),
                None => current = Some(Vec::new()),
            }
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some(lines) = current {
        blocks.push(lines.join("\n"));
    }
    blocks
}

/// The program in a reply: the first fenced block that defines a function (`def `),
/// else the last non-empty fenced block (an unclosed fence runs to the end of the
/// reply), else, without fences, the lines from the first that starts with `def `,
/// `import ` or `from ` on; `None` when none of these holds code.
pub fn extract_code(text: &str) -> Option<String> {
    let blocks = fenced_blocks(text);
    let code = match blocks.iter().find(|b| b.contains("def ")) {
        Some(b) => b.clone(),
        None => match blocks.iter().rev().find(|b| !b.trim().is_empty()) {
            Some(b) => b.clone(),
            None => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.iter().position(|l| {
                    let t = l.trim_start();
                    t.starts_with("def ") || t.starts_with("import ") || t.starts_with("from ")
                })?;
                lines.get(start..).unwrap_or_default().join("\n")
            }
        },
    };
    let code = code.trim_end();
    (!code.trim().is_empty()).then(|| code.to_string())
}

/// The final answer of `text` when the kind is unknown: a `\boxed{}` answer, else an
/// explicit one (`#### N`, "The answer is ..."), else an option letter when the text
/// looks multiple-choice, else the last number, else a leading yes/no.
pub fn extract_any(text: &str) -> Option<String> {
    if let Some(a) = boxed(text).and_then(|b| classify_boxed(&b)) {
        return Some(a);
    }
    if let Some(a) = hash_tail(text).and_then(|t| classify(&t)) {
        return Some(a);
    }
    if let Some(a) = marker_tails(text).find_map(|t| classify(&t)) {
        return Some(a);
    }
    if looks_multiple_choice(text) {
        if let Some(c) = extract_choice(text) {
            return Some(c.to_string());
        }
    }
    if let Some(v) = last_number(&clean(text)) {
        return Some(canonical_number(v));
    }
    let c = STANDALONE_YES_NO.as_ref()?.captures(text)?;
    Some(yes_no_canonical(c.get(1)?.as_str()).to_string())
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`) of `text`, nested braces
/// included, trimmed, as written (not normalised); `None` without a closed, non-empty box.
pub fn boxed_answer(text: &str) -> Option<String> {
    boxed(text)
}

/// `extract` with a known kind, `extract_any` without one.
pub fn extract_as(text: &str, kind: Option<AnswerKind>) -> Option<String> {
    match kind {
        Some(k) => extract(text, k),
        None => extract_any(text),
    }
}

/// The canonical form of a bare answer (a gold label or an extracted answer): numbers
/// as their shortest decimal (`5.0` -> `5`, `3/4` -> `0.75`, `$1,234` -> `1234`,
/// trailing units dropped), a lone option letter upper-cased, yes/true -> `yes`,
/// no/false -> `no`, anything else lower-cased with whitespace collapsed and a trailing
/// period removed.
pub fn normalize(answer: &str) -> String {
    let cleaned = clean(answer);
    let s = strip_decoration(&cleaned);
    if let Some(c) = lone_letter(s) {
        return c.to_string();
    }
    if let Some(v) = whole_number(s) {
        return canonical_number(v);
    }
    if let Some(yn) = LEADING_YES_NO
        .as_ref()
        .and_then(|re| re.captures(s))
        .filter(|c| c.get(0).is_some_and(|m| m.end() == s.len()))
        .and_then(|c| c.get(1))
    {
        return yes_no_canonical(yn.as_str()).to_string();
    }
    if let Some(t) = clock_time(s) {
        return t.to_string();
    }
    normalize_text(s)
}

/// Whether two answers are the same after normalisation (numbers compared numerically,
/// clock times as times: `3:30` is `3:30 p.m.`, `14:30` is `2:30 pm`, see
/// `ClockTime::same`).
pub fn answers_equal(a: &str, b: &str) -> bool {
    let (na, nb) = (normalize(a), normalize(b));
    if na == nb {
        return true;
    }
    if let (Ok(x), Ok(y)) = (na.parse::<f64>(), nb.parse::<f64>()) {
        return numbers_close(x, y);
    }
    match (clock_time(&na), clock_time(&nb)) {
        (Some(x), Some(y)) => x.same(y),
        _ => false,
    }
}

/// Whether two LaTeX math answers are the same after [`normalize_math`]: equal forms,
/// or two numbers that agree (`\frac{1}{2}` and `0.5`). An empty answer equals nothing.
pub fn math_answers_equal(a: &str, b: &str) -> bool {
    let (na, nb) = (normalize_math(a), normalize_math(b));
    if na.is_empty() || nb.is_empty() {
        return false;
    }
    if na == nb {
        return true;
    }
    match (plain_number(&na), plain_number(&nb)) {
        (Some(x), Some(y)) => numbers_close(x, y),
        _ => false,
    }
}

/// Equal up to rounding (relative 1e-9, absolute near zero).
fn numbers_close(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
}

/// The result of a majority vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The winning answer (canonical).
    pub winner: String,
    /// Votes for the winner.
    pub count: usize,
    /// Answers that took part (the `Some` ones).
    pub voters: usize,
    /// Answers voted on, with or without an answer found (`total - voters` had none).
    pub total: usize,
    /// Every answer with its votes, most votes first (ties: first seen first).
    pub distribution: Vec<(String, usize)>,
    /// Indices (into the voted slice) of the answers in the winning group.
    pub members: Vec<usize>,
}

impl Vote {
    /// The index of the answer that stands for the vote: the first of the winning group.
    pub fn chosen(&self) -> Option<usize> {
        self.members.first().copied()
    }

    /// The winner's share of the votes, in 0..=1.
    pub fn share(&self) -> f64 {
        if self.voters == 0 {
            0.0
        } else {
            self.count as f64 / self.voters as f64
        }
    }

    /// The distribution as one line: `42: 3, 41: 1, none: 1`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .distribution
            .iter()
            .map(|(a, c)| format!("{a}: {c}"))
            .collect();
        if self.total > self.voters {
            parts.push(format!("none: {}", self.total - self.voters));
        }
        parts.join(", ")
    }
}

/// Majority vote over answers (`None`: no answer found). Answers are grouped by their
/// canonical form; ties go to the answer seen first. `None` when no answer is `Some`.
pub fn vote(answers: &[Option<String>]) -> Option<Vote> {
    weighted_vote(answers, &[])
}

/// [`vote`] with a weight per answer (missing weights count 1): the winner is the
/// answer with the most weight, `distribution` is ordered by weight (ties: first seen
/// first) and still counts votes.
pub fn weighted_vote(answers: &[Option<String>], weights: &[f64]) -> Option<Vote> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        let Some(a) = a else { continue };
        let key = normalize(a);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(i);
    }
    let weight_of = |k: &String| -> f64 {
        groups.get(k).map_or(0.0, |members| {
            members
                .iter()
                .map(|&i| weights.get(i).copied().unwrap_or(1.0))
                .sum()
        })
    };
    let mut weighted: Vec<(String, usize, f64)> = order
        .iter()
        .map(|k| (k.clone(), groups.get(k).map_or(0, Vec::len), weight_of(k)))
        .collect();
    // Stable sort keeps first-seen order among equal weights.
    weighted.sort_by(|a, b| b.2.total_cmp(&a.2));
    let distribution: Vec<(String, usize)> = weighted.into_iter().map(|(k, c, _)| (k, c)).collect();
    let (winner, count) = distribution.first().cloned()?;
    let members = groups.remove(&winner).unwrap_or_default();
    Some(Vote {
        winner,
        count,
        voters: answers.iter().filter(|a| a.is_some()).count(),
        total: answers.len(),
        distribution,
        members,
    })
}

// ---------------------------------------------------------------------------
// Kind-specific extraction

fn extract_number(text: &str) -> Option<f64> {
    if let Some(v) = boxed(text).and_then(|b| number_in_answer(&b)) {
        return Some(v);
    }
    if let Some(v) = hash_tail(text).and_then(|t| number_in_answer(&t)) {
        return Some(v);
    }
    if let Some(v) = marker_tails(text).find_map(|t| number_in_answer(&t)) {
        return Some(v);
    }
    last_number(&clean(text))
}

fn extract_choice(text: &str) -> Option<char> {
    if let Some(c) = boxed(text).and_then(|b| {
        let b = clean(&b);
        lone_letter(&b).or_else(|| leading_letter(&b))
    }) {
        return Some(c);
    }
    let tails: Vec<String> = marker_tails(text).collect();
    if let Some(c) = tails
        .iter()
        .chain(choice_marker_tails(text).iter())
        .find_map(|t| leading_letter(t))
    {
        return Some(c);
    }
    if let Some(c) = lone_letter(text) {
        return Some(c);
    }
    // "A) 42 apples": a leading letter, unless other options are mentioned too.
    if let Some(c) = opening_letter(text) {
        if option_letters(text).iter().all(|&l| l == c) {
            return Some(c);
        }
    }
    // One single parenthesised letter in the whole text: "I think (B) is right".
    let re = PAREN_LETTER.as_ref()?;
    let mut letters = re
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .filter_map(|m| m.as_str().chars().next());
    let first = letters.next()?;
    letters.all(|c| c == first).then_some(first)
}

fn extract_yes_no(text: &str) -> Option<&'static str> {
    if let Some(yn) = boxed(text).and_then(|b| leading_yes_no(&clean(&b))) {
        return Some(yn);
    }
    if let Some(yn) = marker_tails(text).find_map(|t| leading_yes_no(&t)) {
        return Some(yn);
    }
    if let Some(yn) = leading_yes_no(text) {
        return Some(yn);
    }
    let re = ANY_YES_NO.as_ref()?;
    re.captures_iter(text)
        .last()
        .and_then(|c| c.get(1))
        .map(|m| yes_no_canonical(m.as_str()))
}

fn extract_math(text: &str) -> Option<String> {
    let found = boxed(text)
        .or_else(|| marker_tails(text).find_map(|t| math_tail(&t)))
        .or_else(|| last_number(&clean(text)).map(canonical_number))?;
    let n = normalize_math(&found);
    (!n.is_empty()).then_some(n)
}

/// The math answer at the start of what follows "The answer is": a `$...$` (or
/// `\(...\)`, `\[...\]`) span, else the first sentence.
fn math_tail(tail: &str) -> Option<String> {
    let t = tail.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_' | ':'));
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(rest) = t.strip_prefix(open) {
            let inner = rest.find(close).and_then(|end| rest.get(..end))?.trim();
            return (!inner.is_empty()).then(|| inner.to_string());
        }
    }
    let sentence = first_sentence(t);
    let sentence = sentence.trim().trim_end_matches('.').trim();
    (!sentence.is_empty()).then(|| sentence.to_string())
}

fn extract_text(text: &str) -> Option<String> {
    let found = boxed(text)
        .or_else(|| hash_tail(text))
        .or_else(|| marker_tails(text).next().map(|t| first_sentence(&t)))
        .or_else(|| {
            text.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(str::to_string)
        })?;
    let n = normalize(&found);
    (!n.is_empty()).then_some(n)
}

/// A boxed answer: one that lists several numbers (a point `(3, 0)`, an interval
/// `[1, 5)`, solutions `2, 3`) is compared whole, as math ([`normalize_math`]), not as
/// its first number; anything else as [`classify`].
fn classify_boxed(s: &str) -> Option<String> {
    let cleaned = clean(s);
    let t = strip_decoration(after_last_eq(&cleaned));
    if t.contains(',') && numbers(t).len() > 1 {
        let n = normalize_math(t);
        return (!n.is_empty()).then_some(n);
    }
    classify_answer(t)
}

/// An answer in any form from a short piece of text (a boxed content or what follows
/// "The answer is").
fn classify(s: &str) -> Option<String> {
    let cleaned = clean(s);
    classify_answer(strip_decoration(after_last_eq(&cleaned)))
}

/// [`classify`] of text already cleaned, cut after its last `=` and undecorated.
fn classify_answer(t: &str) -> Option<String> {
    if t.is_empty() {
        return None;
    }
    if let Some(c) = lone_letter(t).or_else(|| leading_letter(t)) {
        return Some(c.to_string());
    }
    if t.contains('\\') {
        // LaTeX we do not evaluate (\sqrt, \pi, ...): compare it as text.
        return Some(normalize_text(t));
    }
    if let Some(v) = first_number(t) {
        return Some(canonical_number(v));
    }
    if let Some(yn) = leading_yes_no(t) {
        return Some(yn.to_string());
    }
    let n = normalize_text(&first_sentence(t));
    (!n.is_empty()).then_some(n)
}

fn number_in_answer(s: &str) -> Option<f64> {
    let cleaned = clean(s);
    first_number(after_last_eq(&cleaned)).or_else(|| first_number(&cleaned))
}

// ---------------------------------------------------------------------------
// Locating answers in text

/// The content of the last `\boxed{...}` (or `\fbox{...}`), nested braces included.
fn boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|k| text.rfind(k).map(|p| p + k.len()))
        .max()?;
    let rest = text.get(start..)?.trim_start();
    let mut chars = rest.chars();
    if chars.next()? != '{' {
        return None;
    }
    let mut depth = 1usize;
    let mut content = String::new();
    for c in chars {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let c = content.trim().to_string();
                    return (!c.is_empty()).then_some(c);
                }
            }
            _ => {}
        }
        content.push(c);
    }
    None
}

/// What follows the last `####` (GSM8K style), on its line.
fn hash_tail(text: &str) -> Option<String> {
    let pos = text.rfind("####")?;
    first_line(text.get(pos + 4..)?)
}

/// Markers looked at, from the last one back. A tail runs to the end of its line, so
/// each costs up to the text's length: without a cap, a long line of markers with no
/// answer after them takes time quadratic in its length.
const MAX_MARKERS: usize = 64;

/// What follows each "answer is" marker, last marker first (the last [`MAX_MARKERS`]).
fn marker_tails(text: &str) -> impl Iterator<Item = String> + '_ {
    let ends: Vec<usize> = MARKER
        .as_ref()
        .map(|re| re.find_iter(text).map(|m| m.end()).collect())
        .unwrap_or_default();
    ends.into_iter()
        .rev()
        .take(MAX_MARKERS)
        .filter_map(move |e| text.get(e..).and_then(first_line))
}

fn choice_marker_tails(text: &str) -> Vec<String> {
    let ends: Vec<usize> = CHOICE_MARKER
        .as_ref()
        .map(|re| re.find_iter(text).map(|m| m.end()).collect())
        .unwrap_or_default();
    ends.into_iter()
        .rev()
        .take(MAX_MARKERS)
        .filter_map(|e| text.get(e..).and_then(first_line))
        .collect()
}

/// The first non-empty line of `s`, trimmed.
fn first_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// `s` up to the end of its first sentence (". " or end).
/// Titles and abbreviations whose period does not end a sentence ("Mrs. Hilt").
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr", "vs", "etc", "e.g", "i.e",
];

/// `s` up to its first sentence end (". " not after an abbreviation).
fn first_sentence(s: &str) -> String {
    for (p, _) in s.match_indices(". ") {
        let before = s.get(..p).unwrap_or(s);
        let word = before
            .rsplit(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        if !ABBREVIATIONS.iter().any(|a| word.eq_ignore_ascii_case(a)) {
            return before.to_string();
        }
    }
    s.to_string()
}

fn after_last_eq(s: &str) -> &str {
    match s.rfind('=') {
        Some(p) => match s.get(p + 1..) {
            Some(rest) if !rest.trim().is_empty() => rest,
            _ => s,
        },
        None => s,
    }
}

fn looks_multiple_choice(text: &str) -> bool {
    if lone_letter(text).is_some() || opening_letter(text).is_some() {
        return true;
    }
    distinct_option_letters(text) >= 2 || PAREN_LETTER.as_ref().is_some_and(|re| re.is_match(text))
}

/// How many different option letters are listed ("(A) ..." or "A) ..." at line starts).
fn distinct_option_letters(text: &str) -> usize {
    let Some(re) = OPTION_LINE.as_ref() else {
        return 0;
    };
    let mut letters: Vec<&str> = re
        .captures_iter(text)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters.len()
}

/// The distinct option letters mentioned as "(X)" or listed at line starts.
fn option_letters(text: &str) -> Vec<char> {
    let mut letters: Vec<char> = [PAREN_LETTER.as_ref(), OPTION_LINE.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|re| re.captures_iter(text))
        .filter_map(|c| c.get(1).and_then(|m| m.as_str().chars().next()))
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters
}

fn lone_letter(s: &str) -> Option<char> {
    let c = LONE_LETTER.as_ref()?.captures(s)?;
    c.get(1)?
        .as_str()
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase())
}

fn leading_letter(s: &str) -> Option<char> {
    let c = LEADING_LETTER.as_ref()?.captures(s)?;
    c.get(1)?.as_str().chars().next()
}

fn opening_letter(s: &str) -> Option<char> {
    let c = OPENING_LETTER.as_ref()?.captures(s)?;
    c.get(1).or_else(|| c.get(2))?.as_str().chars().next()
}

fn leading_yes_no(s: &str) -> Option<&'static str> {
    let c = LEADING_YES_NO.as_ref()?.captures(s)?;
    Some(yes_no_canonical(c.get(1)?.as_str()))
}

fn yes_no_canonical(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "yes" | "true" => "yes",
        _ => "no",
    }
}

// ---------------------------------------------------------------------------
// Numbers

/// LaTeX and typography made plain: `\frac{a}{b}` -> `a/b`, `\text{x}` -> `x`,
/// `1{,}000` -> `1,000`, `\$` -> `$`, the Unicode minus -> `-`.
fn clean(text: &str) -> String {
    let mut s = text
        .replace('\u{2212}', "-")
        .replace("{,}", ",")
        .replace("\\$", "$")
        .replace("\\%", "%")
        .replace("\\left", "")
        .replace("\\right", "")
        .replace("\\!", "")
        .replace("\\,", "")
        .replace("\\;", " ");
    for re in [FRAC.as_ref(), FRAC_SHORT.as_ref()].into_iter().flatten() {
        s = re.replace_all(&s, "$1/$2").into_owned();
    }
    if let Some(re) = TEXT_CMD.as_ref() {
        s = re.replace_all(&s, "$1").into_owned();
    }
    s
}

/// Every number of (cleaned) `s`, with its byte span.
fn numbers(s: &str) -> Vec<(usize, usize, f64)> {
    let Some(re) = NUMBER.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(s)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let mut value: f64 = c.get(2)?.as_str().replace(',', "").parse().ok()?;
            if let Some(den) = c.get(3).and_then(|d| d.as_str().parse::<f64>().ok()) {
                if den != 0.0 {
                    value /= den;
                }
            }
            let negative = c.get(1).is_some_and(|sign| {
                // "x-3" and "10-3" are not negative numbers.
                !s.get(..sign.start())
                    .and_then(|p| p.chars().next_back())
                    .is_some_and(|p| p.is_alphanumeric() || p == ')')
            });
            Some((
                whole.start(),
                whole.end(),
                if negative { -value } else { value },
            ))
        })
        .collect()
}

fn first_number(s: &str) -> Option<f64> {
    numbers(s).first().map(|n| n.2)
}

fn last_number(s: &str) -> Option<f64> {
    numbers(s).last().map(|n| n.2)
}

/// `s` as one number with at most leading currency and trailing units or words
/// (`"$18"`, `"18 dollars"`, `"50%"`), else `None`.
fn whole_number(s: &str) -> Option<f64> {
    let all = numbers(s);
    let (start, end, v) = *all.first()?;
    let prefix = s.get(..start)?;
    let suffix = s.get(end..)?;
    let prefix_ok = prefix.chars().all(|c| c.is_whitespace() || c == '(');
    // Units and words may follow, digits and LaTeX commands may not (`3\pi` is not 3).
    let suffix_ok =
        !suffix.chars().any(|c| c.is_ascii_digit()) && !starts_with_command(suffix.trim_start());
    (prefix_ok && suffix_ok).then_some(v)
}

/// The canonical string of a number: integers without a fraction (`5.0` -> `5`),
/// others rounded to 10 decimals, shortest form.
fn canonical_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let r = if v.abs() < 1e6 {
        (v * 1e10).round() / 1e10
    } else {
        v
    };
    if r == 0.0 {
        return "0".to_string();
    }
    r.to_string()
}

// ---------------------------------------------------------------------------
// Text

/// Trims whitespace and markdown / math decoration around an answer, and a trailing period.
fn strip_decoration(s: &str) -> &str {
    let decoration = |c: char| c.is_whitespace() || matches!(c, '*' | '_' | '$' | '"' | '`');
    let s = s.trim_matches(decoration);
    let s = s.strip_suffix('.').unwrap_or(s);
    s.trim_matches(decoration)
}

fn normalize_text(s: &str) -> String {
    let s = strip_decoration(s).to_lowercase();
    match SPACES.as_ref() {
        Some(re) => re.replace_all(&s, " ").into_owned(),
        None => s,
    }
}

// ---------------------------------------------------------------------------
// Clock times

/// A clock time written as a whole answer: `3:30`, `3:30 p.m.`, `14:05`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClockTime {
    /// The hour as written (1-12 with a half of the day, 0-23 without).
    hour: u32,
    minute: u32,
    /// `Some(true)` for p.m., `Some(false)` for a.m., `None` when not written.
    pm: Option<bool>,
}

impl ClockTime {
    /// Minutes since midnight, where the half of the day is written.
    fn minutes_of_day(self) -> Option<u32> {
        let pm = self.pm?;
        Some(((self.hour % 12) + if pm { 12 } else { 0 }) * 60 + self.minute)
    }

    /// Whether two written times name the same time: with both halves of the day
    /// written, the same minute of the day; with one written, the other read as a
    /// 24-hour time when its hour says so (`0:15`, `14:30`), else as the same half
    /// (`3:30` is `3:30 p.m.`: a question about an afternoon says which half it means);
    /// with neither, the same hour and minute (`15:20` is not `3:20`, which may be a
    /// ratio).
    fn same(self, other: ClockTime) -> bool {
        match (self.minutes_of_day(), other.minutes_of_day()) {
            (Some(x), Some(y)) => x == y,
            (Some(written), None) => other.matches_half_unknown(written),
            (None, Some(written)) => self.matches_half_unknown(written),
            (None, None) => (self.hour, self.minute) == (other.hour, other.minute),
        }
    }

    /// Whether this time, written without a half of the day, may be `minutes` after
    /// midnight.
    fn matches_half_unknown(self, minutes: u32) -> bool {
        if self.hour == 0 || self.hour > 12 {
            self.hour * 60 + self.minute == minutes
        } else {
            (self.hour % 12) * 60 + self.minute == minutes % (12 * 60)
        }
    }
}

impl std::fmt::Display for ClockTime {
    /// `3:30 pm`, `14:05`: the hour without a leading zero, the half of the day as
    /// `am` / `pm` when written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:02}", self.hour, self.minute)?;
        match self.pm {
            Some(true) => write!(f, " pm"),
            Some(false) => write!(f, " am"),
            None => Ok(()),
        }
    }
}

/// `s` as a clock time and nothing else (hours 1-12 with a.m. / p.m., 0-23 without).
fn clock_time(s: &str) -> Option<ClockTime> {
    let c = CLOCK.as_ref()?.captures(s.trim())?;
    let hour: u32 = c.get(1)?.as_str().parse().ok()?;
    let minute: u32 = c.get(2)?.as_str().parse().ok()?;
    let pm = c.get(3).map(|m| m.as_str().eq_ignore_ascii_case("p"));
    let valid = match pm {
        Some(_) => (1..=12).contains(&hour),
        None => hour <= 23,
    };
    valid.then_some(ClockTime { hour, minute, pm })
}

// ---------------------------------------------------------------------------
// Math (LaTeX) answers

/// The canonical form of a LaTeX math answer (a MATH gold answer or a model's boxed
/// answer), so that one answer written in different ways gives one string:
///
/// - math delimiters (`$`, `\(...\)`, `\[...\]`), `\left` / `\right`, spacing
///   commands (`\!`, `\,`, `\;`, `\:`, `\ `, `~`), `\displaystyle` and all whitespace go;
/// - `\dfrac` / `\tfrac` become `\frac`, and arguments written without braces get them
///   (`\frac43` -> `\frac{4}{3}`, `\frac\pi2` -> `\frac{\pi}{2}`, `\sqrt2` -> `\sqrt{2}`,
///   `x^2` -> `x^{2}`);
/// - degrees (`^\circ`, `^{\circ}`, `°`), percent and dollar signs go; units written as
///   a trailing `\text{ ...}` or `\mbox{ ...}` (a space first, after the value) go;
///   `\text{...}` and its kin are unwrapped, and a lone word (two letters or more) is
///   lower-cased;
/// - a trailing period goes; `x = 5` becomes `5` (a short variable on the left);
///   `(c)` becomes `C`; `bmatrix` is written `pmatrix`;
/// - a number (`10,\!080`, `0.50`, `3/4`, `-\frac{2}{3}`) becomes its canonical decimal
///   as in [`normalize`]: `\frac{1}{2}` and `0.5` both give `0.5`;
/// - arithmetic on numbers alone (`3^{3}`, `2\cdot5`, `\frac{1}{2}+1`) is computed by
///   [`crate::arith`]: `3^{3}` and `27` both give `27`.
///
/// No algebra is done: `\frac{\sqrt{3}}{2}` and `\sqrt{3}/2` stay different.
pub fn normalize_math(answer: &str) -> String {
    // One rewrite can uncover another (`\^\circ,` loses `^\circ` and shows `\,`):
    // repeat until nothing changes, so that a normalised answer is its own normal form.
    let mut s = normalize_math_once(answer);
    for _ in 0..MAX_MATH_PASSES {
        let again = normalize_math_once(&s);
        if again == s {
            break;
        }
        s = again;
    }
    s
}

/// Passes of [`normalize_math_once`] after the first, at most.
const MAX_MATH_PASSES: usize = 8;

/// One pass of the rewrites of [`normalize_math`].
fn normalize_math_once(answer: &str) -> String {
    // A row break `\\` must survive the removal of `\ ` (a space command).
    const ROW: &str = "\u{1}";
    let mut s = answer.trim().replace("\\\\", ROW);
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            s = inner.to_string();
        }
    }
    for (from, to) in [
        ("\u{2212}", "-"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", ""),
        ("~", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\degree", ""),
        ("°", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
        ("$", ""),
        ("{,}", ","),
        ("bmatrix", "pmatrix"),
    ] {
        s = s.replace(from, to);
    }
    // Units: `5.4 \text{ cents}`, `864 \mbox{ inches}^2`.
    for unit in ["\\text{ ", "\\mbox{ ", "\\mathrm{ "] {
        if let Some(before) = s.find(unit).and_then(|p| s.get(..p)) {
            if !before.trim().is_empty() {
                s = before.to_string();
            }
        }
    }
    if let Some(re) = TEXT_CMD.as_ref() {
        s = re.replace_all(&s, "$1").into_owned();
    }
    s.retain(|c| !c.is_whitespace());
    let mut s = brace_args(&s, 0);
    while let Some(t) = s.strip_suffix('.').or_else(|| s.strip_suffix(',')) {
        s = t.to_string();
    }
    // `x=5`, `k=-2`: the value of a short variable.
    if let Some((lhs, rhs)) = s.split_once('=') {
        if !rhs.is_empty()
            && !rhs.contains('=')
            && (1..=2).contains(&lhs.len())
            && lhs.chars().all(|c| c.is_ascii_alphabetic())
        {
            s = rhs.to_string();
        }
    }
    // `(C)`: an option letter.
    if let Some(letter) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        if letter.len() == 1 && letter.chars().all(|c| c.is_ascii_alphabetic()) {
            s = letter.to_ascii_uppercase();
        }
    }
    if let Some(v) = math_number(&s).or_else(|| arithmetic_value(&s)) {
        return canonical_number(v);
    }
    // A word (`East`, `Evelyn`), not a single letter (a variable keeps its case).
    if s.chars().count() > 1 && s.chars().all(char::is_alphabetic) {
        s = s.to_lowercase();
    }
    s.replace(ROW, "\\\\")
}

/// The value of `s` (normalised LaTeX, no spaces) when it is nothing but arithmetic on
/// numbers: `3^{3}`, `2\cdot5`, `\frac{1}{2}+1`, `10^{-3}` ([`crate::arith`]).
/// Anything else (a variable, `\sqrt`, `\pi`, a comma) has no value here.
fn arithmetic_value(s: &str) -> Option<f64> {
    let plain = crate::arith::latex_to_plain(s);
    let arithmetic = plain
        .chars()
        .all(|c| c.is_ascii_digit() || ".+-*/^()".contains(c));
    arithmetic.then(|| crate::arith::evaluate(&plain)).flatten()
}

/// `s` as a number when it is nothing else: a decimal with optional thousands
/// separators (`58,500`), `a/b`, or `\frac{a}{b}` of decimals, with an optional sign.
fn math_number(s: &str) -> Option<f64> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ratio = |a: &str, b: &str| -> Option<f64> {
        let d = plain_number(b)?;
        (d != 0.0).then_some(plain_number(a)? / d)
    };
    let v = if let Some(inner) = body.strip_prefix("\\frac{") {
        let (a, rest) = inner.split_once("}{")?;
        ratio(a, rest.strip_suffix('}')?)?
    } else if let Some((a, b)) = body.split_once('/') {
        ratio(a, b)?
    } else {
        let grouped = THOUSANDS.as_ref().is_some_and(|re| re.is_match(body));
        if grouped {
            plain_number(&body.replace(',', ""))?
        } else {
            plain_number(body)?
        }
    };
    Some(if negative { -v } else { v })
}

/// A plain decimal (`12`, `-0.5`, `.25`): digits, at most one point, an optional minus.
fn plain_number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let ok = digits.chars().any(|c| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1;
    ok.then(|| s.parse::<f64>().ok()).flatten()
}

/// Whether `s` starts with a LaTeX command name (`\pi`, `\sqrt`), not a symbol (`\,`).
fn starts_with_command(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next() == Some('\\') && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// Deepest `{...}` nesting rewritten by [`brace_args`]; deeper text is kept as it is.
const MAX_BRACE_DEPTH: usize = 16;

/// Braces around the arguments of `\frac`, `\sqrt`, `^` and `_` written without them:
/// `\frac43` -> `\frac{4}{3}`, `\frac\pi2` -> `\frac{\pi}{2}`, `\sqrt2` -> `\sqrt{2}`,
/// `x^2` -> `x^{2}`, inside braced arguments too. `s` has no whitespace.
fn brace_args(s: &str, depth: usize) -> String {
    if depth > MAX_BRACE_DEPTH || !["\\frac", "\\sqrt", "^", "_"].iter().any(|c| s.contains(c)) {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars.iter().skip(i).take(5).collect();
        let (command, arity) = match rest.as_str() {
            "\\frac" => (rest.as_str(), 2),
            "\\sqrt" => (rest.as_str(), 1),
            _ if rest.starts_with('^') => ("^", 1),
            _ if rest.starts_with('_') => ("_", 1),
            _ => ("", 0),
        };
        if arity == 0 {
            out.extend(chars.get(i));
            i += 1;
            continue;
        }
        out.push_str(command);
        i += command.chars().count();
        // The index of a root: `\sqrt[3]{x}`.
        if arity == 1 && chars.get(i) == Some(&'[') {
            while let Some(&c) = chars.get(i) {
                out.push(c);
                i += 1;
                if c == ']' {
                    break;
                }
            }
        }
        for _ in 0..arity {
            match chars.get(i) {
                // No argument: the text ends, or the enclosing group does.
                None | Some('}') => break,
                Some('{') => {
                    let Some(end) = closing_brace(&chars, i) else {
                        // Unbalanced: keep the rest as it is.
                        out.extend(chars.iter().skip(i));
                        return out;
                    };
                    let inner: String = chars.iter().take(end).skip(i + 1).collect();
                    out.push('{');
                    out.push_str(&brace_args(&inner, depth + 1));
                    out.push('}');
                    i = end + 1;
                }
                Some('\\') => {
                    // A command as the argument: `\pi`.
                    let mut end = i + 1;
                    while chars.get(end).is_some_and(|c| c.is_ascii_alphabetic()) {
                        end += 1;
                    }
                    if end == i + 1 {
                        end = (i + 2).min(chars.len());
                    }
                    // `\frac\fracx` (spaces gone): the argument is `\frac`, not `\fracx`,
                    // as it will be read when normalised again.
                    let name: String = chars.iter().take(end).skip(i).collect();
                    if name.len() > 5 && (name.starts_with("\\frac") || name.starts_with("\\sqrt"))
                    {
                        end = i + 5;
                    }
                    out.push('{');
                    out.extend(chars.iter().take(end).skip(i));
                    out.push('}');
                    i = end;
                }
                Some(&c) => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    i += 1;
                }
            }
        }
    }
    out
}

/// The index of the `}` closing the `{` at `open`.
fn closing_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerKind::*;

    #[test]
    fn code_is_the_first_block_that_defines_a_function() {
        let reply = "Here it is:\n```python\nfrom typing import List\n\ndef f(xs: List[int]) -> int:\n    return sum(xs)\n```\nUsage:\n```python\nprint(f([1, 2]))\n```\n";
        assert_eq!(
            extract(reply, Code).as_deref(),
            Some("from typing import List\n\ndef f(xs: List[int]) -> int:\n    return sum(xs)")
        );
        // No block defines a function: the last non-empty one (a body, say).
        assert_eq!(
            extract("```\n```\n```py\n    return 1\n```", Code).as_deref(),
            Some("    return 1")
        );
        // An unclosed fence runs to the end.
        assert_eq!(
            extract("```python\ndef g():\n    return 2", Code).as_deref(),
            Some("def g():\n    return 2")
        );
        // No fences: from the first `def` / `import` line on.
        assert_eq!(
            extract("Sure.\nimport math\ndef h():\n    return math.pi", Code).as_deref(),
            Some("import math\ndef h():\n    return math.pi")
        );
        assert_eq!(extract("I cannot write that.", Code), None);
        assert_eq!(extract("```python\n\n```", Code), None);
    }

    #[test]
    fn all_patterns_compile() {
        for p in [
            &NUMBER,
            &MARKER,
            &CHOICE_MARKER,
            &LEADING_LETTER,
            &LONE_LETTER,
            &OPENING_LETTER,
            &PAREN_LETTER,
            &OPTION_LINE,
            &LEADING_YES_NO,
            &ANY_YES_NO,
            &STANDALONE_YES_NO,
            &FRAC,
            &FRAC_SHORT,
            &TEXT_CMD,
            &SPACES,
        ] {
            assert!(p.is_some());
        }
    }

    fn num(text: &str) -> Option<String> {
        extract(text, Number)
    }

    #[test]
    fn numbers_from_rambling_outputs() {
        let ramble = "Janet has 16 eggs. She eats 3 for breakfast and bakes muffins with 4. \
                      So she sells 16 - 3 - 4 = 9 eggs. Each sells for $2, so she makes 9 * 2 = 18 dollars.";
        assert_eq!(num(ramble).as_deref(), Some("18"));
        assert_eq!(
            num("First 5 apples, then 7 more.\nThe answer is 42.\nI hope this helps! Step 3 done.")
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            num("Natalia sold 48/2 = 24 clips in May.\n48+24 = 72\n#### 72").as_deref(),
            Some("72")
        );
        assert_eq!(num("#### 18").as_deref(), Some("18"));
        assert_eq!(num("answer: 7 cats").as_deref(), Some("7"));
        assert_eq!(
            num("**Answer:** $1,234.50 in total").as_deref(),
            Some("1234.5")
        );
        assert_eq!(
            num("The total cost is $1,234.50.").as_deref(),
            Some("1234.5")
        );
        assert_eq!(num("So the answer is -3.").as_deref(), Some("-3"));
        assert_eq!(
            num("The temperature fell to −7 degrees").as_deref(),
            Some("-7")
        );
        assert_eq!(num("The answer is 5.0").as_deref(), Some("5"));
        assert_eq!(num("That gives 0.250 of the cake").as_deref(), Some("0.25"));
        assert_eq!(num("Roughly 3/4 of them").as_deref(), Some("0.75"));
        // The "answer is" line wins over a later, unrelated number.
        assert_eq!(
            num("The answer is 12.\nNote: I used 3 steps.").as_deref(),
            Some("12")
        );
        // An equation after the marker: the value after the last `=`.
        assert_eq!(
            num("The answer is 18 - 5 = 13 dollars.").as_deref(),
            Some("13")
        );
        // "10-3" is a difference, not -3.
        assert_eq!(num("the range is 10-3").as_deref(), Some("3"));
        assert_eq!(num("I don't know how to solve this."), None);
        assert_eq!(num(""), None);
    }

    #[test]
    fn boxed_answers_with_nested_braces() {
        assert_eq!(num("so $\\boxed{\\frac{1}{2}}$").as_deref(), Some("0.5"));
        assert_eq!(num("\\boxed{-\\frac{3}{4}}").as_deref(), Some("-0.75"));
        assert_eq!(num("\\boxed{\\dfrac{3}{4}}").as_deref(), Some("0.75"));
        assert_eq!(
            num("We try \\boxed{5} first, but then 7 works: \\boxed{18 \\text{ dollars}}")
                .as_deref(),
            Some("18")
        );
        assert_eq!(num("\\boxed{x = 12}").as_deref(), Some("12"));
        assert_eq!(num("\\boxed{1{,}000}").as_deref(), Some("1000"));
        assert_eq!(
            boxed("\\boxed{\\frac{\\sqrt{2}}{2}}").as_deref(),
            Some("\\frac{\\sqrt{2}}{2}")
        );
        // Unclosed box: fall back to the rest of the rules.
        assert_eq!(num("The answer is 4. \\boxed{4").as_deref(), Some("4"));
        assert_eq!(
            extract_any("\\boxed{\\frac{\\sqrt{2}}{2}}").as_deref(),
            Some("\\frac{\\sqrt{2}}{2}")
        );
    }

    #[test]
    fn option_letters() {
        let ch = |t: &str| extract(t, Choice);
        assert_eq!(ch("**Answer:** (C)").as_deref(), Some("C"));
        assert_eq!(ch("The answer is (B).").as_deref(), Some("B"));
        assert_eq!(ch("Answer: C").as_deref(), Some("C"));
        assert_eq!(
            ch("The correct option is D because ...").as_deref(),
            Some("D")
        );
        assert_eq!(ch("b").as_deref(), Some("B"));
        assert_eq!(ch("(E).").as_deref(), Some("E"));
        assert_eq!(ch("A) 42 apples, since 6 * 7 = 42").as_deref(), Some("A"));
        assert_eq!(ch("\\boxed{\\text{B}}").as_deref(), Some("B"));
        assert_eq!(
            ch("I think (B) is right, as (B) covers it").as_deref(),
            Some("B")
        );
        // Several options discussed, none chosen: no answer rather than a guess.
        assert_eq!(ch("(A) is too small and (B) too large."), None);
        assert_eq!(ch("A number of people came"), None);
        assert_eq!(ch("no idea"), None);
    }

    #[test]
    fn yes_and_no() {
        let yn = |t: &str| extract(t, YesNo);
        assert_eq!(yn("Yes, because 4 > 3.").as_deref(), Some("yes"));
        assert_eq!(yn("**No.** It cannot.").as_deref(), Some("no"));
        assert_eq!(
            yn("Yes, let me think. Actually the answer is no.").as_deref(),
            Some("no")
        );
        assert_eq!(yn("\\boxed{\\text{Yes}}").as_deref(), Some("yes"));
        assert_eq!(yn("The statement is True").as_deref(), Some("yes"));
        assert_eq!(yn("Answer: true").as_deref(), Some("yes"));
        assert_eq!(
            yn("It depends on the weather, so probably yes").as_deref(),
            Some("yes")
        );
        assert_eq!(yn("It depends."), None);
    }

    #[test]
    fn clock_times_compare_as_times() {
        // The forms of one time, as gold answers and extracted answers write them.
        assert_eq!(normalize("3:30 p.m."), "3:30 pm");
        assert_eq!(normalize("03:30PM"), "3:30 pm");
        assert_eq!(normalize("**9:05 a.m.**"), "9:05 am");
        assert_eq!(normalize("14:05"), "14:05");
        assert_eq!(
            extract("So she leaves at 3:30 p.m. The answer is 3:30 p.m.", Text).as_deref(),
            Some("3:30 pm")
        );
        // A half of the day written on one side only: the other is read as that half,
        // or as a 24-hour time when its hour says so.
        assert!(answers_equal("3:30", "3:30 p.m."));
        assert!(answers_equal("5:45 pm", "5:45"));
        assert!(answers_equal("14:30", "2:30 pm"));
        assert!(answers_equal("0:15", "12:15 am"));
        assert!(!answers_equal("14:30", "2:30 am"));
        assert!(!answers_equal("3:30 am", "3:30 pm"));
        assert!(!answers_equal("4:45 pm", "5:45"));
        assert!(!answers_equal("12:15 pm", "0:15"));
        // Without a half of the day on either side, only the same hour and minute:
        // `15:20` and `3:20` may be ratios.
        assert!(answers_equal("03:20", "3:20"));
        assert!(!answers_equal("15:20", "3:20"));
        // Not clock times: out of range, or more than a time.
        assert!(!answers_equal("13:30 pm", "1:30 pm"));
        assert!(!answers_equal("3:75", "4:15"));
        assert!(!answers_equal("3:30 or 4:30", "3:30"));
    }

    #[test]
    fn free_text() {
        assert_eq!(
            extract("The answer is Paris.", Text).as_deref(),
            Some("paris")
        );
        assert_eq!(
            extract("Let me think.\nThe capital is  Paris", Text).as_deref(),
            Some("the capital is paris")
        );
        assert_eq!(extract("\\boxed{18}", Text).as_deref(), Some("18"));
        // A title's period does not end the answer.
        assert_eq!(
            extract("The answer is Mrs. Hilt. She has more.", Text).as_deref(),
            Some("mrs. hilt")
        );
        assert_eq!(
            extract("The answer is Dr. Smith", Text).as_deref(),
            Some("dr. smith")
        );
        assert_eq!(first_sentence("Paris. It is big."), "Paris");
        assert_eq!(extract("   \n ", Text), None);
    }

    #[test]
    fn any_kind() {
        assert_eq!(extract_any("\\boxed{B}").as_deref(), Some("B"));
        assert_eq!(extract_any("The answer is (C).").as_deref(), Some("C"));
        assert_eq!(extract_any("The answer is 42.").as_deref(), Some("42"));
        assert_eq!(extract_any("#### 1,000").as_deref(), Some("1000"));
        // Options restated and discussed without a verdict: no letter is guessed from the
        // listing; the last number is the answer.
        assert_eq!(
            extract_any("(A) 3\n(B) 4\n(C) 5\nOnly (B) fits since 2+2 = 4").as_deref(),
            Some("4")
        );
        assert_eq!(extract("(A) 3\n(B) 4\n(C) 5\nHmm.", Choice), None);
        assert_eq!(extract_any("D").as_deref(), Some("D"));
        assert_eq!(extract_any("So 3 + 4 = 7").as_deref(), Some("7"));
        assert_eq!(extract_any("Yes, it is.").as_deref(), Some("yes"));
        assert_eq!(extract_any("The answer is yes").as_deref(), Some("yes"));
        assert_eq!(extract_any("**No.** It cannot."), Some("no".to_string()));
        assert_eq!(extract_any("No idea."), None);
        assert_eq!(extract_any("I am not sure."), None);
        // A boxed point, interval or list is one answer, not its first number.
        let point = extract_any("So the point is \\boxed{(3, 0)}.");
        assert_eq!(point.as_deref(), Some("(3,0)"));
        assert_eq!(point, extract_any("The answer is \\boxed{(3,0)}"));
        assert_ne!(point, extract_any("\\boxed{(3, \\frac{\\pi}{2})}"));
        assert_ne!(point, extract_any("\\boxed{3}"));
        assert_eq!(
            extract_any("\\boxed{x = 2, 3}").as_deref(),
            Some("2,3"),
            "after the last =",
        );
        assert_eq!(extract_any("\\boxed{1,000}").as_deref(), Some("1000"));
        assert_eq!(
            extract_any("\\boxed{\\$1,234.50}").as_deref(),
            Some("1234.5")
        );
    }

    #[test]
    fn normalisation_and_equality() {
        assert_eq!(normalize("$1,234.50"), "1234.5");
        assert_eq!(normalize("18 dollars"), "18");
        assert_eq!(normalize("50%"), "50");
        assert_eq!(normalize("5.0"), "5");
        assert_eq!(normalize("-3"), "-3");
        assert_eq!(normalize("\\frac{3}{4}"), "0.75");
        assert_eq!(normalize("(b)"), "B");
        assert_eq!(normalize("True"), "yes");
        assert_eq!(normalize("  New   York. "), "new york");
        assert_eq!(normalize("3 apples and 4 pears"), "3 apples and 4 pears");
        assert!(answers_equal("5.0", "5"));
        assert!(answers_equal("3/4", "0.75"));
        assert!(answers_equal("\\frac{3}{4}", "0.75"));
        assert!(answers_equal("$1,234", "1234"));
        assert!(answers_equal("1/3", "0.3333333333"));
        assert!(!answers_equal("1/3", "0.33"));
        assert!(!answers_equal("-3", "3"));
        assert!(!answers_equal("B", "C"));
        assert!(answers_equal("Paris", "paris."));
    }

    #[test]
    fn math_answers_normalised() {
        let n = normalize_math;
        // Gold answers of MATH-500 as written in its solutions.
        assert_eq!(
            n("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "(3,\\frac{\\pi}{2})"
        );
        assert_eq!(n("\\frac43"), "1.3333333333");
        assert_eq!(n("\\frac 59"), n("\\dfrac{5}{9}"));
        assert_eq!(n("\\frac{270}7\\text{ degrees}"), n("\\frac{270}{7}"));
        assert_eq!(n("11\\sqrt2"), "11\\sqrt{2}");
        assert_eq!(n("70 \\sqrt{2}"), "70\\sqrt{2}");
        assert_eq!(n("\\frac{\\sqrt3}{2}"), "\\frac{\\sqrt{3}}{2}");
        assert_eq!(n("\\tfrac\\pi2"), "\\frac{\\pi}{2}");
        assert_eq!(n("\\sqrt[3]2"), "\\sqrt[3]{2}");
        assert_eq!(
            n("x^5 - x^4 + x^3 - x^2 + x - 1"),
            "x^{5}-x^{4}+x^{3}-x^{2}+x-1"
        );
        assert_eq!(n("52_8"), n("52_{8}"));
        assert_eq!(n("e^{i\\pi/2}"), "e^{i\\pi/2}");
        assert_eq!(n("90^\\circ"), "90");
        assert_eq!(n("120^{\\circ}"), "120");
        assert_eq!(n("10,\\!080"), "10080");
        assert_eq!(n("11,\\! 111,\\! 111,\\! 100"), "11111111100");
        assert_eq!(n("\\$32,\\!348"), "32348");
        assert_eq!(n("58,500"), "58500");
        assert_eq!(n("5.4 \\text{ cents}"), "5.4");
        assert_eq!(n("864 \\mbox{ inches}^2"), "864");
        assert_eq!(n("\\text{Evelyn}"), "evelyn");
        assert_eq!(n("\\text{(C)}"), "C");
        assert_eq!(n("x=5"), "5");
        assert_eq!(n("5x - 7y + 11z + 4 = 0"), "5x-7y+11z+4=0");
        assert_eq!(n("3, 5, 7"), "3,5,7");
        assert_eq!(n("(-\\infty, 0]"), "(-\\infty,0]");
        assert_eq!(n("$-\\frac{2}{3}$."), n("-2/3"));
        assert_eq!(n("\\frac{-2}{3}"), n("-\\frac23"));
        assert_eq!(n("50\\%"), "50");
        assert_eq!(
            n("\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}"),
            "\\begin{pmatrix}-1/3\\\\2/3\\\\5/3\\end{pmatrix}"
        );
        assert_eq!(
            n("\\begin{bmatrix}-1&0\\\\0&-1\\end{bmatrix}"),
            n("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}")
        );
        // Unbalanced or empty input is kept, never a panic.
        assert_eq!(n("\\frac{1"), "\\frac{1");
        assert_eq!(n("\\sqrt"), "\\sqrt");
        assert_eq!(n(" $ "), "");
    }

    #[test]
    fn math_answers_compared() {
        let eq = math_answers_equal;
        assert!(eq("\\frac{1}{2}", "0.5"));
        assert!(eq("\\dfrac12", "\\frac{1}{2}"));
        assert!(eq("0.50", "1/2"));
        assert!(eq(
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            "(3,\\frac{\\pi}{2})"
        ));
        assert!(eq("90^\\circ", "90"));
        assert!(eq("\\text{east}", "East"));
        assert!(eq("p - q", "p-q"));
        assert!(eq("6 - 5i", "6-5i"));
        assert!(eq("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"));
        assert!(eq("x=5", "5"));
        // Wrong answers stay wrong.
        assert!(!eq("\\frac{1}{2}", "0.51"));
        assert!(!eq("3\\pi", "3"));
        assert!(!eq("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"));
        assert!(!eq("(2,\\infty)", "[2,\\infty)"));
        assert!(!eq("3, 5, 7", "357"));
        assert!(!eq("6-5i", "6+5i"));
        assert!(!eq("-2", "2"));
        assert!(!eq("", ""));
        // Arithmetic on numbers is done: `3^{3}` is the gold `27`.
        assert!(eq("3^{3}", "27"));
        assert!(eq("3^3", "27"));
        assert!(eq("2 \\cdot 5", "10"));
        assert!(eq("\\frac{1}{2} + 1", "\\frac{3}{2}"));
        assert!(eq("10^{-3}", "0.001"));
        assert!(eq("2 \\times (3 + 4)", "14"));
        assert!(!eq("3^{3}", "9"));
        assert!(!eq("2^{100}", "1e30"));
        // No algebra: equal values written differently are different.
        assert!(!eq("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"));
        assert!(!eq("x^{2}", "x \\cdot x"));
    }

    #[test]
    fn math_answers_extracted() {
        let m = |t: &str| extract(t, Math);
        assert_eq!(
            m("So $r = 3$ and $\\theta = \\frac{\\pi}{2}$, giving $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.")
                .as_deref(),
            Some("(3,\\frac{\\pi}{2})")
        );
        assert_eq!(
            m("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.")
                .as_deref(),
            Some("-0.6666666667")
        );
        assert_eq!(
            m("The answer is \\(2\\sqrt{5}\\).").as_deref(),
            Some("2\\sqrt{5}")
        );
        assert_eq!(m("The answer is east.").as_deref(), Some("east"));
        assert_eq!(m("We get 4 + 5 = 9 apples").as_deref(), Some("9"));
        assert_eq!(m("I cannot solve this."), None);
        assert_eq!(m("\\boxed{ }"), None);
        assert_eq!(
            extract_as("\\boxed{\\dfrac12}", Some(Math)).as_deref(),
            Some("0.5")
        );
    }

    #[test]
    fn latex_commands_are_not_units() {
        assert_eq!(normalize("3\\pi"), "3\\pi");
        assert!(!answers_equal("3\\pi", "3"));
        assert_eq!(normalize("18 \\text{dollars}"), "18");
        assert_eq!(normalize("90^\\circ"), "90");
    }

    #[test]
    fn never_slices_inside_multibyte_chars() {
        for t in [
            "答案是 42。",
            "The answer is 😀 7 😀",
            "\\boxed{ü}",
            "#### €5",
            "Answer: ——",
            "é\\boxed{",
        ] {
            let _ = extract_any(t);
            for k in [Number, Choice, YesNo, Text, Math] {
                let _ = extract(t, k);
            }
        }
        assert_eq!(num("答案是 42。").as_deref(), Some("42"));
        assert_eq!(num("#### €5").as_deref(), Some("5"));
    }

    #[test]
    fn majority_vote() {
        let answers: Vec<Option<String>> = ["18", "17", "18.0", "17", "$18"]
            .iter()
            .map(|s| Some(s.to_string()))
            .chain([None])
            .collect();
        let v = vote(&answers).unwrap();
        assert_eq!(v.winner, "18");
        assert_eq!(v.count, 3);
        assert_eq!(v.voters, 5);
        assert_eq!(v.members, vec![0, 2, 4]);
        assert_eq!(
            v.distribution,
            vec![("18".to_string(), 3), ("17".to_string(), 2)]
        );
        assert!((v.share() - 0.6).abs() < 1e-9);
        assert_eq!(v.total, 6);
        assert_eq!(v.summary(), "18: 3, 17: 2, none: 1");
    }

    #[test]
    fn vote_ties_go_to_first_seen_and_empty_is_none() {
        let answers = vec![
            None,
            Some("B".to_string()),
            Some("A".to_string()),
            Some("a".to_string()),
            Some("(b)".to_string()),
        ];
        let v = vote(&answers).unwrap();
        assert_eq!(v.winner, "B");
        assert_eq!(v.members, vec![1, 4]);
        assert_eq!(vote(&[None, None]), None);
        assert_eq!(vote(&[]), None);
    }
}
