//! The evaluation runner on a scripted backend: scoring, summaries, files, resume.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use optillm_bench::eval::{
    PLOT_FILE, RESULTS_FILE, RUN_FILE, Recorded, SUMMARY_CSV, SUMMARY_JSON, SUMMARY_MD,
};
use optillm_bench::{
    Accuracy, BenchError, EvalEvent, EvalOptions, EvalSummary, Item, ItemRecord, LoadedDataset,
    NoEvalProgress, Shard, run_eval,
};
use optillm_core::extract::AnswerKind;
use optillm_core::mock::MockBackend;
use optillm_core::{BackendError, ChatRequest, Sampling};
use quick_xml::Reader;
use quick_xml::events::Event;

const APPROACHES: [&str; 3] = ["none", "self_consistency(k=3)", "re2"];

/// Six items `[qI]`: "what is I doubled", gold 2I.
fn dataset() -> LoadedDataset {
    LoadedDataset::new(
        "toy",
        (0..6)
            .map(|i| Item {
                id: format!("q{i}"),
                prompt: format!("[q{i}] What is {i} doubled?"),
                gold: (2 * i).to_string(),
                kind: AnswerKind::Number,
                options: Vec::new(),
            })
            .collect(),
    )
}

/// The item number named in a request.
fn item_of(request: &ChatRequest) -> Option<u32> {
    request.messages.iter().find_map(|m| {
        let start = m.content.find("[q")? + 2;
        let rest = m.content.get(start..)?;
        rest.get(..rest.find(']')?)?.parse().ok()
    })
}

/// Single samples are right on even items only; in a request for several samples the
/// first is wrong and the others right, so a vote is always right.
fn scripted() -> MockBackend {
    MockBackend::new(|request, choice| {
        let i = item_of(request).ok_or_else(|| BackendError::InvalidRequest("no item".into()))?;
        let right = if request.n > 1 {
            choice > 0
        } else {
            i % 2 == 0
        };
        let answer = if right { 2 * i } else { 2 * i + 1 };
        Ok(format!(
            "Doubling {i} gives {answer}.\nThe answer is {answer}."
        ))
    })
}

fn specs() -> Vec<String> {
    APPROACHES.iter().map(|s| s.to_string()).collect()
}

fn options() -> EvalOptions {
    EvalOptions {
        seed: 42,
        // Floats in `run.json` must compare equal after the round trip on resume.
        sampling: Sampling::default()
            .with_max_tokens(512)
            .with_temperature(0.7)
            .with_top_p(0.95),
        ..EvalOptions::default()
    }
}

fn read_results(dir: &Path) -> Vec<ItemRecord> {
    std::fs::read_to_string(dir.join(RESULTS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn row<'a>(s: &'a EvalSummary, approach: &str) -> &'a optillm_bench::ApproachSummary {
    s.approaches
        .iter()
        .find(|a| a.approach == approach)
        .unwrap()
}

/// The text of every `<text>` element and the number of `<circle>` elements.
fn svg_texts_and_circles(svg: &str) -> (Vec<String>, usize) {
    let mut reader = Reader::from_str(svg);
    let mut texts = Vec::new();
    let mut circles = 0;
    let mut in_text = false;
    let mut depth: i64 = 0;
    let mut saw_root = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                depth += 1;
                if e.name().as_ref() == b"svg" {
                    saw_root = true;
                }
                in_text = e.name().as_ref() == b"text";
            }
            Event::End(_) => {
                depth -= 1;
                in_text = false;
            }
            Event::Empty(e) if e.name().as_ref() == b"circle" => circles += 1,
            Event::Text(t) if in_text => {
                let s = t.unescape().unwrap().trim().to_string();
                if !s.is_empty() {
                    texts.push(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(saw_root, "an <svg> root element");
    assert_eq!(depth, 0, "every element is closed");
    (texts, circles)
}

#[tokio::test]
async fn scores_summarises_and_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(scripted());
    let events = Mutex::new(Vec::new());
    let progress = |e: &EvalEvent<'_>| {
        let tag = match e {
            EvalEvent::Started { total, done } => format!("start {done}/{total}"),
            EvalEvent::Recorded { done, total, .. } => format!("{done}/{total}"),
            EvalEvent::Finished { .. } => "finished".to_string(),
            _ => "other".to_string(),
        };
        events.lock().unwrap().push(tag);
    };
    let summary = run_eval(
        mock.clone(),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &progress,
    )
    .await
    .unwrap();

    // One request per (approach, item): self-consistency asks for its 3 samples at once.
    assert_eq!(mock.calls(), 18);
    let events = events.into_inner().unwrap();
    assert_eq!(events.first().unwrap(), "start 0/18");
    assert_eq!(events[18], "18/18");
    assert_eq!(events.last().unwrap(), "finished");

    assert_eq!(summary.items, 6);
    assert_eq!(summary.model, "mock");
    let none = row(&summary, "none");
    let sc = row(&summary, "self_consistency(k=3)");
    let re2 = row(&summary, "re2");
    assert_eq!((none.correct, none.items), (3, 6));
    assert_eq!((sc.correct, sc.items), (6, 6));
    assert_eq!((re2.correct, re2.items), (3, 6));
    let expected = Accuracy::new(3, 6);
    assert_eq!(
        (none.accuracy, none.ci_low, none.ci_high),
        (0.5, expected.ci_low, expected.ci_high)
    );
    assert_eq!(sc.accuracy, 1.0);
    assert_eq!((none.mean_calls, sc.mean_calls), (1.0, 1.0));
    // Token means are the mock's word counts, summed per item and averaged.
    let records = read_results(dir.path());
    assert_eq!(records.len(), 18);
    for a in APPROACHES {
        let rs: Vec<&ItemRecord> = records.iter().filter(|r| r.approach == a).collect();
        let mean = rs.iter().map(|r| r.total_tokens() as f64).sum::<f64>() / 6.0;
        assert!((row(&summary, a).mean_tokens - mean).abs() < 1e-9);
        assert!(rs.iter().all(|r| r.error.is_none() && r.calls == 1));
    }
    assert!(sc.mean_tokens > none.mean_tokens);
    assert!(
        re2.mean_tokens > none.mean_tokens,
        "re2 repeats the question"
    );
    // none is cheapest, self-consistency most accurate; re2 costs more than none for
    // the same accuracy.
    assert!(none.pareto && sc.pareto && !re2.pareto);

    // Records: gold, extraction, per-item seeds shared by the approaches.
    let q1 = records
        .iter()
        .find(|r| r.approach == "none" && r.item == "q1")
        .unwrap();
    assert_eq!(
        (q1.gold.as_str(), q1.extracted.as_deref(), q1.correct),
        ("2", Some("3"), false)
    );
    // The vote of self-consistency is recorded: sample 0 wrong, samples 1 and 2 right.
    let sc_q1 = records
        .iter()
        .find(|r| r.approach == "self_consistency(k=3)" && r.item == "q1")
        .unwrap();
    assert_eq!(sc_q1.vote.as_deref(), Some("2: 2, 3: 1"));
    assert_eq!(q1.vote, None);
    let seeds: HashMap<&str, HashSet<u32>> = records.iter().fold(HashMap::new(), |mut m, r| {
        m.entry(r.item.as_str()).or_default().insert(r.seed);
        m
    });
    assert!(seeds.values().all(|s| s.len() == 1));
    assert_eq!(
        seeds.values().flatten().collect::<HashSet<_>>().len(),
        6,
        "different items, different seeds"
    );
    for request in mock.requests().iter().filter(|r| r.n == 1) {
        let item = format!("q{}", item_of(request).unwrap());
        assert_eq!(
            request.sampling.seed,
            Some(optillm_bench::eval::item_seed(42, &item))
        );
        assert_eq!(request.sampling.max_tokens, Some(512));
    }

    // Files.
    let json: EvalSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(SUMMARY_JSON)).unwrap())
            .unwrap();
    assert_eq!((json.items, json.approaches.len()), (6, 3));
    for (a, b) in json.approaches.iter().zip(&summary.approaches) {
        assert_eq!(
            (&a.approach, a.correct, a.pareto),
            (&b.approach, b.correct, b.pareto)
        );
        assert!(
            (a.ci_low - b.ci_low).abs() < 1e-12 && (a.mean_tokens - b.mean_tokens).abs() < 1e-12
        );
    }
    let csv = std::fs::read_to_string(dir.path().join(SUMMARY_CSV)).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("approach,items,correct,accuracy,ci_low,ci_high,mean_tokens"));
    assert!(lines[1].starts_with("none,6,3,0.500000,"));
    assert!(lines[2].starts_with("self_consistency(k=3),6,6,1.000000,"));
    // re2: not on the front, not the reference, the same answers as none (b = c = 0).
    assert!(
        lines[3].contains(",false,false,6,0.000000,"),
        "{}",
        lines[3]
    );
    assert!(lines[3].contains(",0,0,1.000000,"), "{}", lines[3]);
    // The reference row has empty paired columns.
    assert!(lines[1].ends_with(",true,,,,,,,,"), "{}", lines[1]);
    assert!(lines[0].ends_with(
        ",pareto,reference,paired_items,diff,diff_ci_low,diff_ci_high,b,c,mcnemar_p,\
         tokens_vs_reference"
    ));
    assert!(dir.path().join(RUN_FILE).exists());

    let svg = std::fs::read_to_string(dir.path().join(PLOT_FILE)).unwrap();
    let (texts, circles) = svg_texts_and_circles(&svg);
    for label in APPROACHES {
        assert!(
            texts.iter().any(|t| t == label),
            "label {label} in {texts:?}"
        );
    }
    assert!(texts.iter().any(|t| t == "mean tokens per question"));
    assert!(texts.iter().any(|t| t == "accuracy"));
    assert!(texts.iter().any(|t| t == "Pareto front"));
    assert!(texts.iter().any(|t| t.contains("mock on toy")));
    assert!(circles >= 3, "{circles} points");

    // Paired with the reference (`none`, the only none): self-consistency is right on
    // the 3 odd items none misses and on the 3 even ones it gets.
    assert_eq!(summary.baseline.as_deref(), Some("none"));
    assert_eq!(json.baseline.as_deref(), Some("none"));
    assert!(none.vs_baseline.is_none());
    let d = sc.vs_baseline.unwrap();
    assert_eq!((d.items, d.both, d.b, d.c, d.neither), (6, 3, 3, 0, 0));
    assert_eq!(d.diff, 0.5);
    assert_eq!(d.mcnemar_p, 0.25);
    // Tokens as a multiple of the reference's, on the questions both ran (all 6 here).
    assert!(none.tokens_vs_baseline.is_none());
    let ratio = sc.tokens_vs_baseline.unwrap();
    assert!(
        (ratio - sc.mean_tokens / none.mean_tokens).abs() < 1e-9,
        "{ratio}"
    );
    assert!(ratio > 1.0, "three samples cost more than one: {ratio}");
    assert!(lines[2].ends_with(&format!(",{ratio:.4}")), "{}", lines[2]);
    let from_json = json.approaches[1].vs_baseline.unwrap();
    assert_eq!((from_json.b, from_json.c, from_json.items), (3, 0, 6));
    assert!((from_json.ci_low - d.ci_low).abs() < 1e-12);
    // Number answers: no multiple-choice baselines.
    assert!(summary.no_model.is_empty());

    let md = summary.to_markdown();
    assert!(md.contains(&format!(
        "| none * | 50.0% (3/6) | {:.1}-{:.1}% | reference |",
        expected.ci_low * 100.0,
        expected.ci_high * 100.0
    )));
    assert!(md.contains("| re2 | 50.0% (3/6) |"));
    // Bold when the interval leaves out zero.
    let bold = if d.excludes_zero() { "**" } else { "" };
    let cell = format!(
        "| {bold}+50.0 ({:+.1} to {:+.1}){bold} | 3/0 | 0.250 | {:.0} | {ratio:.1}x |",
        d.ci_low * 100.0,
        d.ci_high * 100.0,
        sc.mean_tokens
    );
    assert!(md.contains(&cell), "{cell} in {md}");
    assert!(md.contains("Reference: `none`."));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(SUMMARY_MD)).unwrap(),
        md
    );
}

#[tokio::test]
async fn a_killed_run_resumes_with_only_the_missing_runs() {
    // A complete run, for reference.
    let full_dir = tempfile::tempdir().unwrap();
    let full = run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &options(),
        full_dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    let full_text = std::fs::read_to_string(full_dir.path().join(RESULTS_FILE)).unwrap();
    let full_lines: Vec<&str> = full_text.lines().collect();

    // The run killed while writing its 8th record: 7 whole lines and half of the 8th.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(full_dir.path().join(RUN_FILE), dir.path().join(RUN_FILE)).unwrap();
    let half = full_lines[7]
        .chars()
        .take(full_lines[7].chars().count() / 2);
    let partial = format!(
        "{}\n{}",
        full_lines[..7].join("\n"),
        half.collect::<String>()
    );
    std::fs::write(dir.path().join(RESULTS_FILE), partial).unwrap();
    let recorded: HashSet<(String, String)> = full_lines[..7]
        .iter()
        .map(|l| serde_json::from_str::<ItemRecord>(l).unwrap())
        .map(|r| (r.approach, r.item))
        .collect();

    let mock = Arc::new(scripted());
    let started = Mutex::new(None);
    let progress = |e: &EvalEvent<'_>| {
        if let EvalEvent::Started { done, total } = e {
            *started.lock().unwrap() = Some((*done, *total));
        }
    };
    let resumed = run_eval(
        mock.clone(),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(*started.lock().unwrap(), Some((7, 18)));
    assert_eq!(mock.calls(), 18 - 7, "only the missing runs");

    let records = read_results(dir.path());
    assert_eq!(
        records.len(),
        18,
        "the truncated line is gone, every pair once"
    );
    let pairs: HashSet<(String, String)> = records
        .iter()
        .map(|r| (r.approach.clone(), r.item.clone()))
        .collect();
    assert_eq!(pairs.len(), 18);
    assert!(recorded.iter().all(|p| pairs.contains(p)));
    // Everything recorded before the kill was left as it was.
    let text = std::fs::read_to_string(dir.path().join(RESULTS_FILE)).unwrap();
    assert!(text.starts_with(&(full_lines[..7].join("\n") + "\n")));

    for (a, b) in full.approaches.iter().zip(&resumed.approaches) {
        assert_eq!(
            (&a.approach, a.correct, a.items, a.mean_tokens, a.pareto),
            (&b.approach, b.correct, b.items, b.mean_tokens, b.pareto)
        );
    }

    // Once complete, another run does nothing.
    let again = Arc::new(scripted());
    run_eval(
        again.clone(),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(again.calls(), 0);

    // A larger limit or another approach only adds what is missing.
    let more = Arc::new(scripted());
    let mut with_majority = specs();
    with_majority.push("majority_voting(k=3)".into());
    let s = run_eval(
        more.clone(),
        &dataset(),
        &with_majority,
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(more.calls(), 6);
    assert_eq!(s.approaches.len(), 4);

    // A different seed would mix incomparable results.
    let other = EvalOptions {
        seed: 7,
        ..options()
    };
    let err = run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &other,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BenchError::Mismatch { .. }), "{err}");
}

#[tokio::test]
async fn summaries_judge_recorded_answers_by_todays_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    // A record whose stored verdict an older scoring gave: `none` answered 3 on q1
    // (gold 2), stored as right.
    let path = dir.path().join(RESULTS_FILE);
    let mut records = read_results(dir.path());
    let old = records
        .iter_mut()
        .find(|r| r.approach == "none" && r.item == "q1")
        .unwrap();
    assert_eq!((old.extracted.as_deref(), old.correct), (Some("3"), false));
    old.correct = true;
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    // A finished run only rewrites the summary: the answer is judged again.
    let mock = Arc::new(scripted());
    let again = run_eval(
        mock.clone(),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(mock.calls(), 0);
    let (before, now) = (row(&first, "none"), row(&again, "none"));
    assert_eq!(
        now.correct, before.correct,
        "counted as wrong, as today's scoring says"
    );
    assert_eq!((before.rejudged, now.rejudged), (0, 1));
    assert_eq!(row(&again, "re2").rejudged, 0);
    assert_eq!(
        row(&again, "re2").vs_baseline.as_ref().map(|d| (d.b, d.c)),
        row(&first, "re2").vs_baseline.as_ref().map(|d| (d.b, d.c)),
        "the paired comparison judges the same way"
    );
    let md = std::fs::read_to_string(dir.path().join(SUMMARY_MD)).unwrap();
    assert!(
        md.contains("otherwise than when they ran") && md.contains("per approach: `none` 1."),
        "{md}"
    );
    // The stored verdict is left as it was.
    assert!(
        read_results(dir.path())
            .iter()
            .any(|r| r.approach == "none" && r.item == "q1" && r.correct)
    );
}

#[tokio::test]
async fn a_damaged_middle_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    let path = dir.path().join(RESULTS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("{", "{{", 2).replacen("{{", "{", 1)).unwrap();
    let err = run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BenchError::Json { line: 2, .. }), "{err}");
}

#[tokio::test]
async fn failures_are_recorded_or_stop_the_run() {
    // A request the backend rejects is recorded as a wrong answer with its error.
    let rejects_q2 = Arc::new(MockBackend::new(|request, _| match item_of(request) {
        Some(2) => Err(BackendError::InvalidRequest("too long".into())),
        Some(i) => Ok(format!("The answer is {}.", 2 * i)),
        None => Ok(String::new()),
    }));
    let dir = tempfile::tempdir().unwrap();
    let opts = EvalOptions {
        limit: Some(4),
        ..options()
    };
    let s = run_eval(
        rejects_q2,
        &dataset(),
        &["none".to_string()],
        &opts,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        (s.items, s.approaches[0].correct, s.approaches[0].errors),
        (4, 3, 1)
    );
    let failed = read_results(dir.path())
        .into_iter()
        .find(|r| r.item == "q2")
        .unwrap();
    assert!(!failed.correct && failed.error.as_deref().unwrap().contains("too long"));

    // A lost connection stops the run without recording the pair; a later run resumes.
    let flaky_q1 = Arc::new(MockBackend::new(|request, _| match item_of(request) {
        Some(1) => Err(BackendError::Connection("refused".into())),
        Some(i) => Ok(format!("The answer is {}.", 2 * i)),
        None => Ok(String::new()),
    }));
    let dir = tempfile::tempdir().unwrap();
    let err = run_eval(
        flaky_q1,
        &dataset(),
        &["none".to_string()],
        &opts,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BenchError::Strategy { .. }), "{err}");
    assert_eq!(read_results(dir.path()).len(), 1, "only q0 was recorded");
    let good = Arc::new(scripted());
    let s = run_eval(
        good.clone(),
        &dataset(),
        &["none".to_string()],
        &opts,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(good.calls(), 3);
    assert_eq!(s.approaches[0].items, 4);
}

#[tokio::test]
async fn bad_specs_fail_before_any_call() {
    let mock = Arc::new(scripted());
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        vec!["none".to_string(), "no_such_approach".to_string()],
        vec!["self_consistency(kk=3)".to_string()],
        vec!["bon(".to_string()],
        vec![],
        vec!["none".to_string(), " none ".to_string()],
    ] {
        let err = run_eval(
            mock.clone(),
            &dataset(),
            &bad,
            &options(),
            dir.path(),
            &NoEvalProgress,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                BenchError::Strategy { .. } | BenchError::InvalidArgument(_)
            ),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn a_shuffled_sample_is_reproducible() {
    let mock = Arc::new(scripted());
    let opts = EvalOptions {
        limit: Some(3),
        shuffle: true,
        ..options()
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&d1, &d2] {
        run_eval(
            mock.clone(),
            &dataset(),
            &["none".to_string()],
            &opts,
            d.path(),
            &NoEvalProgress,
        )
        .await
        .unwrap();
    }
    let items = |d: &Path| -> Vec<String> { read_results(d).into_iter().map(|r| r.item).collect() };
    assert_eq!(items(d1.path()), items(d2.path()));
    assert_eq!(items(d1.path()).len(), 3);
    assert_ne!(items(d1.path()), ["q0", "q1", "q2"]);
}

#[tokio::test]
async fn shards_share_a_directory_and_a_last_run_sums_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let whole_dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(scripted());
    // Two shards, one after the other here (in practice concurrently), into one directory.
    for index in 0..2 {
        let opts = EvalOptions {
            shard: Some(Shard { index, count: 2 }),
            ..options()
        };
        run_eval(
            mock.clone(),
            &dataset(),
            &specs(),
            &opts,
            dir.path(),
            &NoEvalProgress,
        )
        .await
        .unwrap();
        let recorded: HashSet<String> = read_results(dir.path())
            .into_iter()
            .map(|r| r.item)
            .collect();
        let expected: HashSet<String> = (0..6)
            .filter(|i| i % 2 <= index)
            .map(|i| format!("q{i}"))
            .collect();
        assert_eq!(recorded, expected, "after shard {index}/2");
    }
    let calls = mock.calls();
    // The last run without a shard makes no call and summarises everything.
    let summary = run_eval(
        mock.clone(),
        &dataset(),
        &specs(),
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(mock.calls(), calls);
    let whole = run_eval(
        Arc::new(scripted()),
        &dataset(),
        &specs(),
        &options(),
        whole_dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(summary.approaches.len(), 3);
    for (a, b) in summary.approaches.iter().zip(&whole.approaches) {
        assert_eq!(
            (a.items, a.correct, a.mean_tokens),
            (b.items, b.correct, b.mean_tokens)
        );
    }
}

#[test]
fn shard_specs_parse_or_fail_clearly() {
    assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
    assert!(Shard::parse("1/3").unwrap().holds(4));
    assert!(!Shard::parse("1/3").unwrap().holds(3));
    for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
        let e = Shard::parse(bad).unwrap_err();
        assert!(matches!(e, BenchError::InvalidArgument(_)), "{bad}");
        assert!(e.to_string().contains("I/N"), "{bad}: {e}");
    }
}

/// The scripted backend, each call held 5 ms; counts the calls in flight at once.
struct Overlapping {
    inner: MockBackend,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl optillm_core::Backend for Overlapping {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn capabilities(&self) -> optillm_core::Capabilities {
        self.inner.capabilities()
    }
    async fn stream(
        &self,
        request: ChatRequest,
    ) -> Result<optillm_core::CompletionStream, BackendError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        self.inner.stream(request).await
    }
}

#[tokio::test]
async fn concurrent_runs_record_the_same_results_in_the_same_order() {
    let (serial_dir, concurrent_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let overlapping = || {
        Arc::new(Overlapping {
            inner: scripted(),
            in_flight: Default::default(),
            most: Default::default(),
        })
    };
    let (serial, concurrent) = (overlapping(), overlapping());
    let four = EvalOptions {
        concurrency: 4,
        ..options()
    };
    for (backend, opts, dir) in [
        (&serial, options(), &serial_dir),
        (&concurrent, four, &concurrent_dir),
    ] {
        run_eval(
            backend.clone(),
            &dataset(),
            &specs(),
            &opts,
            dir.path(),
            &NoEvalProgress,
        )
        .await
        .unwrap();
    }
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(serial.most.load(SeqCst), 1);
    assert!(concurrent.most.load(SeqCst) > 1, "runs overlapped");
    assert!(concurrent.most.load(SeqCst) <= 4);
    let key = |r: &ItemRecord| {
        (
            r.approach.clone(),
            r.item.clone(),
            r.output.clone(),
            r.correct,
        )
    };
    let a: Vec<_> = read_results(serial_dir.path()).iter().map(key).collect();
    let b: Vec<_> = read_results(concurrent_dir.path())
        .iter()
        .map(key)
        .collect();
    assert_eq!(a.len(), 18);
    assert_eq!(a, b);
}

#[tokio::test]
async fn greedy_none_is_the_reference_unless_another_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(scripted());
    let approaches: Vec<String> = ["none", "re2", "none(temperature=0.0)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let summary = run_eval(
        mock.clone(),
        &dataset(),
        &approaches,
        &options(),
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    // The greedy row is told apart by its spec and chosen over plain `none`.
    let greedy = summary.baseline.clone().unwrap();
    assert!(greedy.starts_with("none(temperature=0"), "{greedy}");
    assert!(row(&summary, &greedy).vs_baseline.is_none());
    assert!(row(&summary, "none").vs_baseline.is_some());
    // Its requests are greedy; the others keep the evaluation's temperature.
    let temps: HashSet<String> = mock
        .requests()
        .iter()
        .map(|r| format!("{:?}", r.sampling.temperature))
        .collect();
    assert_eq!(
        temps,
        HashSet::from(["Some(0.0)".to_string(), "Some(0.7)".to_string()])
    );
    assert_eq!(
        mock.requests()
            .iter()
            .filter(|r| r.sampling.temperature == Some(0.0))
            .count(),
        6
    );

    // `baseline` chooses another reference; the records are reused (no call).
    let calls = mock.calls();
    let opts = EvalOptions {
        baseline: Some("re2".into()),
        ..options()
    };
    let again = run_eval(
        mock.clone(),
        &dataset(),
        &approaches,
        &opts,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    assert_eq!(mock.calls(), calls);
    assert_eq!(again.baseline.as_deref(), Some("re2"));
    assert!(row(&again, "re2").vs_baseline.is_none());
    assert!(row(&again, &greedy).vs_baseline.is_some());

    // A reference that is not evaluated is refused before any call.
    let opts = EvalOptions {
        baseline: Some("bon".into()),
        ..options()
    };
    let err = run_eval(
        mock.clone(),
        &dataset(),
        &approaches,
        &opts,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BenchError::InvalidArgument(_)), "{err}");
    assert_eq!(mock.calls(), calls);
}

#[test]
fn the_default_reference_follows_the_base_temperature() {
    use optillm_bench::eval::resolve_baseline;
    let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sampled = Sampling::default().with_temperature(0.7);
    let greedy = Sampling::default().with_temperature(0.0);
    let unset = Sampling::default();
    let both = keys(&["bon", "none", "none(temperature=0)"]);
    assert_eq!(
        resolve_baseline(&both, None, &sampled).unwrap().as_deref(),
        Some("none(temperature=0)")
    );
    // With a greedy base sampling plain `none` is greedy too, and comes first.
    assert_eq!(
        resolve_baseline(&both, None, &greedy).unwrap().as_deref(),
        Some("none")
    );
    // No greedy none: the first none; no none at all: no reference.
    let plain = keys(&["bon", "none(temperature=1)", "none"]);
    assert_eq!(
        resolve_baseline(&plain, None, &unset).unwrap().as_deref(),
        Some("none(temperature=1)")
    );
    assert_eq!(
        resolve_baseline(&keys(&["bon"]), None, &unset).unwrap(),
        None
    );
    // A requested reference is matched in its canonical form.
    assert_eq!(
        resolve_baseline(&keys(&["bon(n=3)"]), Some("bon( n = 3 )"), &unset)
            .unwrap()
            .as_deref(),
        Some("bon(n=3)")
    );
}

#[tokio::test]
async fn a_run_halfway_is_summarised_without_a_call_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(scripted());
    // Half the questions (q0, q2, q4: single samples are right on even items).
    let half = EvalOptions {
        shard: Some(Shard { index: 0, count: 2 }),
        ..options()
    };
    run_eval(
        mock.clone(),
        &dataset(),
        &specs(),
        &half,
        dir.path(),
        &NoEvalProgress,
    )
    .await
    .unwrap();
    let calls = mock.calls();
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = files(dir.path());
    let summary = Recorded::read(&dataset(), &specs(), &options(), dir.path())
        .unwrap()
        .summary();
    assert_eq!(mock.calls(), calls);
    assert_eq!(files(dir.path()), before, "a file was written");
    let none = row(&summary, "none");
    assert_eq!((none.items, none.correct), (3, 3));
    assert_eq!(row(&summary, "re2").items, 3);
    // Another data set's directory is refused.
    let other = LoadedDataset::new("other", dataset().items);
    let e = Recorded::read(&other, &specs(), &options(), dir.path())
        .err()
        .unwrap();
    assert!(e.to_string().contains("toy"), "{e}");
}
