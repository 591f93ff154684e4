//! Every strategy of the catalogue, run natively on SmolLM2-135M with small settings:
//! it must finish with an answer, and its usage must be the sum over its trace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use optillm_core::strategies::calculator;
use optillm_core::strategy::{self, Budget, StrategyRequest};
use optillm_core::{Backend, Sampling, spec, strategies};

/// Small settings per approach, so the whole catalogue runs in minutes on 2 cores.
fn small(slug: &str) -> String {
    match slug {
        "diverse" => "diverse(n=3)",
        "self_consistency" => "self_consistency(k=3)",
        "majority_voting" => "majority_voting(k=3)",
        "bon" => "bon(n=2,rating_max_tokens=8)",
        "moa" => "moa(samples=2,critique_max_tokens=48)",
        "genselect" => "genselect(n=2)",
        "rto" => "rto(description_max_tokens=48)",
        "cot_decoding" => "cot_decoding(k=3,max_tokens=24)",
        "entropy_decoding" => "entropy_decoding(max_tokens=24,seed=1)",
        "thinkdeeper" => "thinkdeeper(max_tokens=32,seed=1)",
        "autothink" => "autothink(max_tokens=32,seed=1)",
        "deepconf" => "deepconf(max_tokens=24,max_traces=4,warmup_traces=2,parallel=2,window=8,seed=1)",
        "mcts" => "mcts(simulations=1,candidates=2,user_max_tokens=24)",
        "pvg" => "pvg(rounds=1,n=1)",
        "rsa" => "rsa(population=2,k=2,steps=2)",
        "mars" => "mars(agents=2,temperatures=[0.3,0.9],token_budget=1200)",
        "plansearch" => "plansearch(plans=1,observations=2,derived=1)",
        "leap" => "leap(max_examples=1,max_principles=2)",
        "deepthink" => "deepthink(samples=2)",
        "rstar" => "rstar(rollouts=1,max_depth=2,step_max_tokens=32,max_tokens=64)",
        "cepo" => "cepo(bestofn=1,planning_n=1,planning_m=1,rating=\"majority\",plan_max_tokens=48,execute_max_tokens=48,review_max_tokens=48,answer_max_tokens=48)",
        other => other,
    }
    .to_string()
}

const CAPITAL: &str = "What is the capital of France?\n\n(A) Banana\n(B) Paris\n(C) Seven\n\n\
                       Answer with the letter.";

/// `spec`'s answer to [`CAPITAL`] on the real model, checked to be Paris.
async fn capital(spec: &str) -> strategy::Outcome {
    let backend: Arc<dyn Backend> = common::native();
    let approach = strategies::build_spec(&spec::parse(spec).unwrap()).unwrap();
    let out = strategy::run(
        approach.as_ref(),
        backend,
        &StrategyRequest::user(CAPITAL),
        Budget::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        out.answer, "The answer is (B) Paris",
        "{:?}",
        out.candidates
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choice_likelihood_ranks_the_options_by_the_model() {
    let out = capital("choice_likelihood").await;
    assert_eq!(out.candidates.len(), 3);
    // One token job: the stem's prompt, then the options' tokens after their first.
    assert_eq!(out.usage.calls, 1);
    assert!(out.usage.prompt_tokens > 5, "{:?}", out.usage);
}

/// By letter: the question with its options in the chat template, each letter scored as
/// the reply `The answer is (X)`; the real model puts the capital's letter first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choice_likelihood_by_letter_scores_the_letters_after_the_options() {
    let out = capital("choice_likelihood(score=letter)").await;
    assert_eq!(out.usage.calls, 1);
    // The options' letters were asked, with the options and the instruction, in a
    // sequence of their own: its prompt counts beside the stem's.
    assert!(out.usage.prompt_tokens > 30, "{:?}", out.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_runs_natively_with_consistent_accounting() {
    let backend: Arc<dyn Backend> = common::native();
    let mut request = StrategyRequest::user("What is 6 times 7? End with: The answer is N.");
    request.sampling = Sampling::default().with_max_tokens(48).with_seed(3);
    let budget = Budget {
        max_total_tokens: Some(4000),
        max_duration: Some(Duration::from_secs(240)),
    };
    // The multiple-choice approach needs lettered options.
    let mut choice = StrategyRequest::user(CAPITAL);
    choice.sampling = request.sampling.clone();
    let mut failures = Vec::new();
    for info in strategies::catalogue() {
        let spec_text = small(info.slug);
        let parsed = spec::parse(&spec_text).unwrap();
        let approach = strategies::build_spec(&parsed).unwrap();
        let asked = if info.slug == "choice_likelihood" {
            &choice
        } else {
            &request
        };
        match strategy::run(approach.as_ref(), backend.clone(), asked, budget).await {
            Ok(out) => {
                let calls = out.trace.len() as u32;
                let prompt: u64 = out
                    .trace
                    .iter()
                    .map(|t| u64::from(t.usage.prompt_tokens))
                    .sum();
                let completion: u64 = out
                    .trace
                    .iter()
                    .map(|t| u64::from(t.usage.completion_tokens))
                    .sum();
                eprintln!(
                    "{spec_text}: {} calls, {} tokens, {:.1} s{}: {:?}",
                    out.usage.calls,
                    out.usage.total_tokens(),
                    out.wall.as_secs_f64(),
                    if out.budget_exhausted {
                        " (budget cut)"
                    } else {
                        ""
                    },
                    out.answer.chars().take(60).collect::<String>()
                );
                if out.answer.trim().is_empty() {
                    failures.push(format!("{spec_text}: empty answer"));
                }
                if out.usage.calls != calls
                    || out.usage.prompt_tokens != prompt
                    || out.usage.completion_tokens != completion
                {
                    failures.push(format!(
                        "{spec_text}: usage {:?} is not the trace sum ({calls}, {prompt}, {completion})",
                        out.usage
                    ));
                }
                if calls == 0 {
                    failures.push(format!("{spec_text}: no model call"));
                }
                // The voting approaches report their vote over the k=3 samples.
                let voting = matches!(info.slug, "self_consistency" | "majority_voting");
                if let (true, Some(v)) = (voting, &out.vote) {
                    if v.total != 3 || v.count == 0 || v.count > v.voters {
                        failures.push(format!("{spec_text}: vote {v:?} is not over 3 samples"));
                    }
                }
            }
            Err(e) => failures.push(format!("{spec_text}: {e}")),
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calculator_runs_the_program_the_model_writes() {
    let backend: Arc<dyn Backend> = common::native();
    let request = common::program_request();
    let approach = strategies::build_spec(&spec::parse("calculator").unwrap()).unwrap();
    let out = strategy::run(approach.as_ref(), backend, &request, Budget::default())
        .await
        .unwrap();
    // Every output block holds what its program prints. (Without `run_code` the model
    // writes the program `x = 4 + 3; print(x * 6)` and imagines its output as 12.)
    let blocks = common::output_blocks(&out.answer);
    assert!(
        !blocks.is_empty(),
        "no program with an output: {}",
        out.answer
    );
    for (code, written) in blocks {
        assert_eq!(written, calculator::program_output(&code), "{}", out.answer);
    }
}

/// Natively, `mixed_vote(calculator=true)` decodes its program (pot's conversation, in
/// a sequence of its own) and its chains in one token job; the program runs, and the
/// chains' programs run as they write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_vote_decodes_program_and_chains_in_one_job() {
    let backend: Arc<dyn Backend> = common::native();
    let mut request = common::program_request();
    request.sampling.seed = Some(3);
    let spec = "mixed_vote(calculator=true,samples_when=always)";
    let approach = strategies::build_spec(&spec::parse(spec).unwrap()).unwrap();
    let out = strategy::run(approach.as_ref(), backend, &request, Budget::default())
        .await
        .unwrap();
    assert_eq!(out.trace.len(), 1, "{:?}", out.trace);
    let job = &out.trace[0];
    assert_eq!(job.purpose, "program and chains");
    // The program, the greedy chain and two samples, in that order.
    assert_eq!(job.outputs.len(), 4, "{:?}", job.outputs);
    assert_eq!(out.candidates.len(), 4);
    assert!(
        out.candidates[0].starts_with("[program:"),
        "{}",
        out.candidates[0]
    );
    assert!(out.candidates[1].starts_with("[greedy chain:"));
    for chain in &job.outputs[1..] {
        for (code, written) in common::output_blocks(chain) {
            assert_eq!(written, calculator::program_output(&code), "{chain}");
        }
    }
    assert!(out.usage.completion_tokens > 0);
}
