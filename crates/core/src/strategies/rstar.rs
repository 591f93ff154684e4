//! `rstar`: rStar (Qi et al. 2024, "Mutual reasoning makes smaller LLMs stronger
//! problem-solvers"): Monte-Carlo tree search over five human-like reasoning actions,
//! then a mutual-consistency check that keeps the trajectories a second pass agrees with.
//!
//! A node is one reasoning step, produced by one of the actions from its parent:
//!
//! * A1 `next_step`: propose one next step;
//! * A2 `remaining_steps`: propose all remaining steps, to the final answer;
//! * A3 `sub_question`: ask a sub-question and answer it;
//! * A4 `reanswer`: answer the sub-question of the parent step again (only after A3);
//! * A5 `rephrase`: rephrase the question as its conditions and unknowns (only at the root).
//!
//! As in the paper, the last level of the tree (depth `max_depth`) only takes A2, so every
//! rollout can end in an answer. A step is terminal when it states a final answer
//! ("The answer is N", `#### N` or `\boxed{N}`, extracted by [`crate::extract`]); A5 and
//! sub-answers never are. Each of the `rollouts` rollouts selects by UCT (weight
//! `exploration`) until it reaches a node with untried actions, expands one (seeded random
//! choice), simulates with random actions down to a terminal or the depth limit (simulated
//! nodes join the tree, as in the reference), and backs up the value: for a terminal,
//! 1.0 when its answer is (one of) the most common among the terminals found so far
//! (`reward = "majority"`) or its answer's share of them (`reward = "share"`); 0 otherwise.
//!
//! Every trajectory that reached an answer is then checked for mutual consistency: a
//! discriminator call (one per trajectory, concurrently) is given a prefix of the trajectory
//! (a seeded random split, never the final step) and completes it; the trajectory is kept
//! when the completion reaches the same answer. Among the kept trajectories (all of them
//! when none is kept) the most common answer wins, and its trajectory with the highest mean
//! value is returned, as its whole reasoning text, not only the answer.
//!
//! Concurrency: the rollouts that start by trying a new action at the root (the first
//! four, with the default depth) do not depend on one another: which action each starts
//! with follows from the seed alone, and each then grows a branch of its own. They run at
//! once and join the tree in rollout order, with the same node numbering, terminals, values
//! and offers as one after another; each rollout draws from a random stream of its own
//! (seed and rollout number), so that the choices do not depend on the order in which
//! calls finish. The later rollouts select by the values backed up, so they run one by one.
//!
//! Differences from the reference (Python optillm `rstar.py`): the state given to an action
//! is the whole trajectory so far, not only the parent's text; UCT expands untried actions
//! before descending; values come from answer agreement rather than "a number was found";
//! the consistency check compares answers, not word overlap; the full answer is returned.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::future::join_all;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::sampler::Rng;
use super::select::settle;
use super::util::{one, prompt, temp};
use crate::extract::{AnswerKind, answers_equal, extract_as, normalize, vote};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

pub const SLUG: &str = "rstar";

const SYSTEM: &str = "You are a helpful assistant focused on solving mathematical problems. \
                      Stick to the given question and avoid introducing new scenarios.";

const NEXT_STEP: &str = "Write only the next step of the reasoning: one short, clear thought \
                         that moves towards the solution.";
const REMAINING_STEPS: &str = "Write all the remaining steps needed to solve the question, \
                               each clear and directly related to the problem, and finish with \
                               the final answer.";
const SUB_QUESTION: &str = "Ask one sub-question whose answer helps to solve the question, then \
                            answer it. Write it as \"Sub-question: ...\" followed by \
                            \"Sub-answer: ...\".";
const REANSWER: &str = "Answer the last sub-question again, carefully and step by step, \
                        checking each calculation. Write the result as \"Sub-answer: ...\".";
const REPHRASE: &str = "Rephrase the question by listing all the conditions it gives and what \
                        it asks for. Do not solve it yet.";
const FINAL: &str =
    "If you reach the final answer to the question, end with \"The answer is <answer>\".";
/// The discriminator's instruction in the mutual-consistency check.
const COMPLETE: &str = "Complete the reasoning from here to solve the question, and finish \
                        with \"The answer is <answer>\".";

/// A statement of the final answer.
static FINAL_ANSWER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)\bthe\s+(?:final\s+)?answer\s+(?:is|would\s+be|will\s+be)\b|####|\\boxed\{")
        .ok()
});

/// One of the five rStar actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A1: one next step.
    NextStep,
    /// A2: the remaining steps, to the final answer.
    RemainingSteps,
    /// A3: a sub-question and its answer.
    SubQuestion,
    /// A4: the parent's sub-question answered again.
    Reanswer,
    /// A5: the question rephrased.
    Rephrase,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::NextStep => "A1 next step",
            Action::RemainingSteps => "A2 remaining steps",
            Action::SubQuestion => "A3 sub-question",
            Action::Reanswer => "A4 re-answer sub-question",
            Action::Rephrase => "A5 rephrase question",
        }
    }

    fn instruction(self) -> &'static str {
        match self {
            Action::NextStep => NEXT_STEP,
            Action::RemainingSteps => REMAINING_STEPS,
            Action::SubQuestion => SUB_QUESTION,
            Action::Reanswer => REANSWER,
            Action::Rephrase => REPHRASE,
        }
    }

    /// Whether a step of this action can end the reasoning.
    fn can_answer(self) -> bool {
        matches!(self, Action::NextStep | Action::RemainingSteps)
    }
}

/// How a terminal step is valued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// 1.0 when the answer is (one of) the most common among the terminals so far, else 0.
    Majority,
    /// The answer's share of the terminals found so far.
    Share,
}

/// The parameters of `rstar`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// MCTS rollouts (select, expand, simulate, back up).
    pub rollouts: u32,
    /// Most reasoning steps in a trajectory; the last level only takes A2.
    pub max_depth: u32,
    /// UCT exploration weight `c`.
    pub exploration: f64,
    /// Temperature of the action steps. The reference uses 0.2; higher here so that
    /// trajectories differ and the vote and consistency check say something.
    pub temperature: f32,
    /// Token cap of A1, A3, A4 and A5 steps.
    pub step_max_tokens: u32,
    /// Token cap of A2 steps and discriminator completions (reference: 4096).
    pub max_tokens: u32,
    pub reward: Reward,
    /// Run the mutual-consistency check; `false` picks by vote and value alone.
    pub mutual_consistency: bool,
    /// Temperature of the discriminator's completions.
    pub discriminator_temperature: f32,
    /// Answer kind to extract and compare (`number`, `choice`, `yes_no`, `text`); `null`: any.
    pub answer_kind: Option<AnswerKind>,
    /// Seed of the action choices and the consistency splits.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            rollouts: 5,
            max_depth: 3,
            exploration: 1.4,
            temperature: 0.7,
            step_max_tokens: 256,
            max_tokens: 1024,
            reward: Reward::Majority,
            mutual_consistency: true,
            discriminator_temperature: 0.2,
            answer_kind: None,
            seed: 0,
        }
    }
}

/// The `rstar` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct RStar {
    params: Params,
}

impl RStar {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |m: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: m.into(),
        };
        if params.rollouts == 0 || params.max_depth == 0 {
            return Err(bad("rollouts and max_depth must be at least 1"));
        }
        if params.step_max_tokens == 0 || params.max_tokens == 0 {
            return Err(bad("step_max_tokens and max_tokens must be at least 1"));
        }
        if !params.exploration.is_finite() || params.exploration < 0.0 {
            return Err(bad("exploration must be a finite number >= 0"));
        }
        for t in [params.temperature, params.discriminator_temperature] {
            if !t.is_finite() || t < 0.0 {
                return Err(bad("temperatures must be finite numbers >= 0"));
            }
        }
        Ok(Self { params })
    }
}

/// One reasoning step (node 0, the root, is the question and has no step).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub action: Option<Action>,
    pub step: String,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub depth: u32,
    pub visits: u32,
    pub value: f64,
    /// The final answer, for a terminal step.
    pub answer: Option<String>,
}

/// The final answer stated by a step of `action`, which makes it terminal.
pub(crate) fn terminal_answer(
    action: Action,
    step: &str,
    kind: Option<AnswerKind>,
) -> Option<String> {
    let states_answer = FINAL_ANSWER.as_ref().is_some_and(|re| re.is_match(step));
    if !action.can_answer() || !states_answer {
        return None;
    }
    extract_as(step, kind)
}

/// The user prompt of `action` after the steps so far.
fn action_prompt(question: &str, steps: &[&str], action: Action) -> String {
    let mut p = format!("Question: {question}\n\n");
    p.push_str(&reasoning_so_far(steps));
    p.push_str(action.instruction());
    if action != Action::Rephrase {
        p.push('\n');
        p.push_str(FINAL);
    }
    p
}

fn reasoning_so_far(steps: &[&str]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut s = String::from("Reasoning so far:\n");
    for (i, step) in steps.iter().enumerate() {
        s.push_str(&format!("Step {}: {}\n", i + 1, step.trim()));
    }
    s.push('\n');
    s
}

/// The actions allowed after a step of `action` at `depth` (the root: depth 0, no action).
fn valid_after(params: &Params, depth: u32, action: Option<Action>, terminal: bool) -> Vec<Action> {
    if terminal || depth >= params.max_depth {
        return Vec::new();
    }
    if depth + 1 == params.max_depth {
        return vec![Action::RemainingSteps];
    }
    let mut actions = vec![
        Action::NextStep,
        Action::RemainingSteps,
        Action::SubQuestion,
    ];
    if action == Some(Action::SubQuestion) {
        actions.push(Action::Reanswer);
    }
    if depth == 0 {
        actions.push(Action::Rephrase);
    }
    actions
}

/// A seeded random pick among `actions` (no draw when there is none).
fn choose(rng: &mut Rng, actions: &[Action]) -> Option<Action> {
    if actions.is_empty() {
        return None;
    }
    let i = (rng.next_u64() % actions.len() as u64) as usize;
    actions.get(i).copied()
}

/// The random stream of rollout `k`: its own, so that concurrent rollouts draw the same
/// choices whatever order their calls finish in.
fn rollout_rng(seed: u64, k: u32) -> Rng {
    Rng::new(seed.wrapping_add(u64::from(k + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)))
}

/// One step made by a rollout before it joins the tree.
struct Step {
    action: Action,
    text: String,
    answer: Option<String>,
}

/// What the question, the system prompt and the settings give every step call.
#[derive(Clone, Copy)]
struct StepCtx<'a> {
    ctx: &'a Ctx,
    request: &'a StrategyRequest,
    params: &'a Params,
    question: &'a str,
    system: &'a str,
}

impl StepCtx<'_> {
    /// Applies `action` after `steps` (one model call).
    async fn step(&self, steps: &[&str], action: Action) -> Result<Step, StrategyError> {
        let user = action_prompt(self.question, steps, action);
        let max_tokens = if action == Action::RemainingSteps {
            self.params.max_tokens
        } else {
            self.params.step_max_tokens
        };
        let sampling = temp(self.params.temperature).with_max_tokens(max_tokens);
        let text = one(
            self.ctx,
            self.request,
            action.label(),
            prompt(Some(self.system), user),
            &sampling,
        )
        .await?;
        let text = text.trim().to_string();
        let answer = terminal_answer(action, &text, self.params.answer_kind);
        Ok(Step {
            action,
            text,
            answer,
        })
    }

    /// A rollout that starts with the untried root action `first`: that step, then random
    /// actions down to a terminal or the depth limit, on a branch no other rollout touches.
    /// Offers its reasoning while no answer was offered, and its answer if it is the first.
    async fn branch(
        self,
        first: Action,
        mut rng: Rng,
        answered: &AtomicBool,
    ) -> Result<Vec<Step>, StrategyError> {
        let mut steps: Vec<Step> = Vec::new();
        let mut next = Some(first);
        while let Some(action) = next {
            let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
            let step = self.step(&texts, action).await?;
            let terminal = step.answer.is_some();
            steps.push(step);
            let offer = if terminal {
                !answered.swap(true, Ordering::SeqCst)
            } else {
                !answered.load(Ordering::SeqCst)
            };
            if offer {
                let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
                self.ctx.offer(texts.join("\n\n"));
            }
            let depth = steps.len() as u32;
            next = choose(
                &mut rng,
                &valid_after(self.params, depth, Some(action), terminal),
            );
        }
        Ok(steps)
    }
}

/// A trajectory that reached an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    /// Its terminal node.
    pub node: usize,
    pub answer: String,
    /// Mean value of the terminal node.
    pub score: f64,
}

/// The candidate to return: the most common answer among the consistent candidates (all
/// of them when none is consistent, or when `consistent` is `None`), and within it the
/// highest score (the first found on ties).
pub(crate) fn pick(candidates: &[Candidate], consistent: Option<&[bool]>) -> Option<usize> {
    let kept: Vec<usize> = match consistent {
        Some(ok) => (0..candidates.len())
            .filter(|&i| ok.get(i).copied().unwrap_or(false))
            .collect(),
        None => Vec::new(),
    };
    let pool: Vec<usize> = if kept.is_empty() {
        (0..candidates.len()).collect()
    } else {
        kept
    };
    let answers: Vec<Option<String>> = pool
        .iter()
        .map(|&i| Some(candidates[i].answer.clone()))
        .collect();
    let winner = vote(&answers)?;
    let mut best: Option<usize> = None;
    for &m in &winner.members {
        let i = pool[m];
        if best.is_none_or(|b| candidates[i].score > candidates[b].score) {
            best = Some(i);
        }
    }
    best
}

struct Search<'a> {
    ctx: &'a Ctx,
    request: &'a StrategyRequest,
    params: &'a Params,
    question: String,
    system: String,
    nodes: Vec<Node>,
    /// Terminal nodes, in the order found.
    terminals: Vec<usize>,
    /// The random stream of the consistency check's splits.
    rng: Rng,
}

impl Search<'_> {
    /// The steps from the root to `node`, in order.
    fn steps(&self, node: usize) -> Vec<&str> {
        let mut out = Vec::new();
        let mut at = Some(node);
        while let Some(i) = at {
            if self.nodes[i].parent.is_some() {
                out.push(self.nodes[i].step.as_str());
            }
            at = self.nodes[i].parent;
        }
        out.reverse();
        out
    }

    /// The whole reasoning of the trajectory ending at `node`.
    fn trajectory_text(&self, node: usize) -> String {
        self.steps(node).join("\n\n")
    }

    /// The actions allowed from `node`.
    fn valid_actions(&self, node: usize) -> Vec<Action> {
        let n = &self.nodes[node];
        valid_after(self.params, n.depth, n.action, n.answer.is_some())
    }

    fn step_ctx(&self) -> StepCtx<'_> {
        StepCtx {
            ctx: self.ctx,
            request: self.request,
            params: self.params,
            question: &self.question,
            system: &self.system,
        }
    }

    fn untried_actions(&self, node: usize) -> Vec<Action> {
        let tried: Vec<Option<Action>> = self.nodes[node]
            .children
            .iter()
            .map(|&c| self.nodes[c].action)
            .collect();
        self.valid_actions(node)
            .into_iter()
            .filter(|a| !tried.contains(&Some(*a)))
            .collect()
    }

    fn uct(&self, parent: usize, child: usize) -> f64 {
        let (p, c) = (&self.nodes[parent], &self.nodes[child]);
        if c.visits == 0 {
            return f64::INFINITY;
        }
        let n = f64::from(c.visits);
        c.value / n + self.params.exploration * (f64::from(p.visits.max(1)).ln() / n).sqrt()
    }

    fn best_uct_child(&self, node: usize) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &c in &self.nodes[node].children {
            if best.is_none_or(|b| self.uct(node, c) > self.uct(node, b)) {
                best = Some(c);
            }
        }
        best
    }

    /// Applies `action` to `node` (one model call) and adds the new step as a child.
    async fn expand(&mut self, node: usize, action: Action) -> Result<usize, StrategyError> {
        let step = self.step_ctx().step(&self.steps(node), action).await?;
        Ok(self.attach(node, step))
    }

    /// Adds `step` as a child of `node`; returns its id.
    fn attach(&mut self, node: usize, step: Step) -> usize {
        let Step {
            action,
            text,
            answer,
        } = step;
        let id = self.nodes.len();
        let depth = self.nodes[node].depth + 1;
        tracing::debug!(
            node = id,
            depth,
            action = action.label(),
            ?answer,
            "rstar step"
        );
        self.nodes.push(Node {
            action: Some(action),
            step: text,
            parent: Some(node),
            children: Vec::new(),
            depth,
            visits: 0,
            value: 0.0,
            answer: answer.clone(),
        });
        self.nodes[node].children.push(id);
        if answer.is_some() {
            self.terminals.push(id);
        }
        // What a budget cut returns: the best answered trajectory so far; before any
        // answer, the newest partial reasoning rather than nothing.
        let candidates = self.candidates();
        let offered = pick(&candidates, None).map_or(id, |best| candidates[best].node);
        if answer.is_some() || self.terminals.is_empty() {
            self.ctx.offer(self.trajectory_text(offered));
        }
        id
    }

    /// The value of a node reached by a rollout.
    fn evaluate(&self, node: usize) -> f64 {
        let Some(answer) = &self.nodes[node].answer else {
            return 0.0;
        };
        let key = normalize(answer);
        let answers: Vec<String> = self
            .terminals
            .iter()
            .filter_map(|&t| self.nodes[t].answer.as_deref().map(normalize))
            .collect();
        let count = |k: &str| answers.iter().filter(|a| a.as_str() == k).count();
        let mine = count(&key);
        match self.params.reward {
            Reward::Majority => {
                let top = answers.iter().map(|a| count(a)).max().unwrap_or(0);
                if mine >= top { 1.0 } else { 0.0 }
            }
            Reward::Share => mine as f64 / answers.len().max(1) as f64,
        }
    }

    fn backpropagate(&mut self, mut node: usize, value: f64) {
        loop {
            let n = &mut self.nodes[node];
            n.visits += 1;
            n.value += value;
            match n.parent {
                Some(p) => node = p,
                None => break,
            }
        }
    }

    /// One rollout: select, expand, simulate, back up.
    async fn rollout(&mut self, rng: &mut Rng) -> Result<(), StrategyError> {
        let mut node = 0;
        // Selection: descend by UCT until a node with untried actions (or a leaf that
        // cannot be expanded: terminal or at the depth limit).
        loop {
            let untried = self.untried_actions(node);
            if let Some(action) = choose(rng, &untried) {
                node = self.expand(node, action).await?;
                break;
            }
            match self.best_uct_child(node) {
                Some(c) => node = c,
                None => break,
            }
        }
        // Simulation: random actions down to a terminal or the depth limit.
        loop {
            let valid = self.valid_actions(node);
            let Some(action) = choose(rng, &valid) else {
                break;
            };
            node = self.expand(node, action).await?;
        }
        let value = self.evaluate(node);
        self.backpropagate(node, value);
        Ok(())
    }

    /// Rollouts that each start with an untried root action (`starts`: the action and the
    /// rollout's random stream, whose first draw chose it), at once; their branches join
    /// the tree in rollout order, each valued and backed up as its rollout ends.
    async fn wave(&mut self, starts: Vec<(Action, Rng)>) -> Result<(), StrategyError> {
        let answered = AtomicBool::new(!self.terminals.is_empty());
        let branches = {
            let step_ctx = self.step_ctx();
            let answered = &answered;
            join_all(
                starts
                    .into_iter()
                    .map(|(first, rng)| step_ctx.branch(first, rng, answered)),
            )
            .await
        };
        for branch in branches {
            let mut node = 0;
            for step in branch? {
                node = self.attach(node, step);
            }
            let value = self.evaluate(node);
            self.backpropagate(node, value);
        }
        Ok(())
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.terminals
            .iter()
            .filter_map(|&t| {
                let n = &self.nodes[t];
                Some(Candidate {
                    node: t,
                    answer: n.answer.clone()?,
                    score: n.value / f64::from(n.visits.max(1)),
                })
            })
            .collect()
    }

    /// The discriminator's verdict on each candidate (`None`: cut by the budget), and the
    /// budget error if a call was cut.
    async fn mutual_consistency(
        &mut self,
        candidates: &[Candidate],
    ) -> Result<(Vec<bool>, Option<StrategyError>), StrategyError> {
        let mut prefixes: Vec<Vec<String>> = Vec::with_capacity(candidates.len());
        for c in candidates {
            let steps: Vec<String> = self.steps(c.node).into_iter().map(String::from).collect();
            // A random split before the final step (the question alone for one step).
            let keep = if steps.len() >= 2 {
                1 + (self.rng.next_u64() % (steps.len() as u64 - 1)) as usize
            } else {
                0
            };
            prefixes.push(steps.into_iter().take(keep).collect());
        }
        let step =
            temp(self.params.discriminator_temperature).with_max_tokens(self.params.max_tokens);
        let calls = prefixes.iter().enumerate().map(|(i, prefix)| {
            let ctx = self.ctx.clone();
            let refs: Vec<&str> = prefix.iter().map(String::as_str).collect();
            let user = format!(
                "Question: {}\n\n{}{COMPLETE}",
                self.question,
                reasoning_so_far(&refs)
            );
            let messages: Vec<Message> = prompt(Some(&self.system), user);
            let purpose = format!("discriminate trajectory {}", i + 1);
            let step = &step;
            let request = self.request;
            async move { one(&ctx, request, &purpose, messages, step).await }
        });
        let (completions, cut) = settle(join_all(calls).await)?;
        let verdicts = completions
            .iter()
            .zip(candidates)
            .map(|(completion, c)| {
                completion
                    .as_deref()
                    .and_then(|t| extract_as(t, self.params.answer_kind))
                    .is_some_and(|a| answers_equal(&a, &c.answer))
            })
            .collect();
        Ok((verdicts, cut))
    }

    /// The trajectory along the most visited children, for a search that found no answer.
    fn most_visited_leaf(&self) -> usize {
        let mut node = 0;
        while let Some(&c) = self.nodes[node]
            .children
            .iter()
            .max_by_key(|&&c| self.nodes[c].visits)
        {
            node = c;
        }
        node
    }
}

/// Runs the tree search; returns the search state (node 0 is the root).
async fn search<'a>(
    ctx: &'a Ctx,
    request: &'a StrategyRequest,
    params: &'a Params,
) -> Result<Search<'a>, StrategyError> {
    let question = request.query()?.to_string();
    let system = request.system().unwrap_or(SYSTEM).to_string();
    let root = Node {
        action: None,
        step: String::new(),
        parent: None,
        children: Vec::new(),
        depth: 0,
        visits: 0,
        value: 0.0,
        answer: None,
    };
    let mut s = Search {
        ctx,
        request,
        params,
        question,
        system,
        nodes: vec![root],
        terminals: Vec::new(),
        rng: Rng::new(params.seed),
    };
    // The rollouts that try a new root action: their first draws depend on the seed and
    // on the actions tried before them only, so they are known before any call.
    let root_actions = valid_after(params, 0, None, false);
    let mut starts: Vec<(Action, Rng)> = Vec::new();
    let mut next = 0;
    while next < params.rollouts {
        let untried: Vec<Action> = root_actions
            .iter()
            .copied()
            .filter(|a| !starts.iter().any(|(b, _)| b == a))
            .collect();
        let mut rng = rollout_rng(params.seed, next);
        let Some(first) = choose(&mut rng, &untried) else {
            break;
        };
        starts.push((first, rng));
        next += 1;
    }
    s.wave(starts).await?;
    tracing::debug!(
        rollouts = next,
        nodes = s.nodes.len(),
        terminals = s.terminals.len(),
        "rstar: rollouts at the root, run at once"
    );
    for i in next..params.rollouts {
        s.rollout(&mut rollout_rng(params.seed, i)).await?;
        tracing::debug!(
            rollout = i,
            nodes = s.nodes.len(),
            terminals = s.terminals.len(),
            "rstar rollout"
        );
    }
    Ok(s)
}

impl Approach for RStar {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "rStar: MCTS over five reasoning actions, then a mutual-consistency check; returns the whole reasoning";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for RStar {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let params = Params {
            answer_kind: answer_kind(request.query()?, self.params.answer_kind),
            ..self.params.clone()
        };
        let mut s = search(ctx, request, &params).await?;
        let candidates = s.candidates();
        if candidates.is_empty() {
            tracing::warn!("rstar: no trajectory reached an answer; returning the most visited");
            let text = s.trajectory_text(s.most_visited_leaf());
            return Ok(Answer::one(text));
        }
        let (consistent, cut) = if self.params.mutual_consistency {
            let (v, cut) = s.mutual_consistency(&candidates).await?;
            (Some(v), cut)
        } else {
            (None, None)
        };
        let chosen = pick(&candidates, consistent.as_deref()).unwrap_or(0);
        let text = s.trajectory_text(candidates[chosen].node);
        ctx.offer(text.clone());
        if let Some(e) = cut {
            return Err(e);
        }
        tracing::info!(
            candidates = candidates.len(),
            consistent = consistent
                .as_ref()
                .map_or(candidates.len(), |v| v.iter().filter(|&&b| b).count()),
            answer = %candidates[chosen].answer,
            "rstar pick"
        );
        let labelled = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let check = match &consistent {
                    Some(v) if v.get(i).copied().unwrap_or(false) => "consistent",
                    Some(_) => "inconsistent",
                    None => "unchecked",
                };
                format!(
                    "[answer: {}, {check}, value: {:.2}]\n{}",
                    normalize(&c.answer),
                    c.score,
                    s.trajectory_text(c.node)
                )
            })
            .collect();
        Ok(Answer::one(text).with_candidates(labelled))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::ChatRequest;

    fn user_text(r: &ChatRequest) -> &str {
        r.last_user().unwrap_or_default()
    }

    /// A1 "a step", A3 a sub-question, A4 a sub-answer, A5 a rephrase, A2 "The answer is 12".
    fn simple() -> MockBackend {
        MockBackend::new(|r, _| {
            let u = user_text(r);
            Ok(if u.contains(REMAINING_STEPS) || u.contains(COMPLETE) {
                "Adding up gives 12. The answer is 12."
            } else if u.contains(SUB_QUESTION) {
                "Sub-question: how many? Sub-answer: 4"
            } else if u.contains(REANSWER) {
                "Sub-answer: 4"
            } else if u.contains(REPHRASE) {
                "Given three boxes of four, find the total."
            } else {
                "a step"
            }
            .to_string())
        })
    }

    #[test]
    fn terminal_detection() {
        let kind = None;
        assert_eq!(
            terminal_answer(
                Action::RemainingSteps,
                "3 * 4 = 12. The answer is 12.",
                kind
            )
            .as_deref(),
            Some("12")
        );
        assert_eq!(
            terminal_answer(Action::NextStep, "So the final answer is $1,200.", kind).as_deref(),
            Some("1200")
        );
        assert_eq!(
            terminal_answer(Action::NextStep, "#### 7", kind).as_deref(),
            Some("7")
        );
        // A number without a statement of the final answer is a step, not an end.
        assert_eq!(terminal_answer(Action::NextStep, "3 * 4 = 12", kind), None);
        assert_eq!(terminal_answer(Action::NextStep, "Answer: 12", kind), None);
        // Sub-answers and rephrasings never end the reasoning.
        assert_eq!(
            terminal_answer(
                Action::SubQuestion,
                "Sub-question: x? The answer is 4",
                kind
            ),
            None
        );
        assert_eq!(
            terminal_answer(Action::Rephrase, "The answer is what we look for", kind),
            None
        );
    }

    #[tokio::test]
    async fn rollouts_and_visits_follow_the_parameters() {
        let mock = Arc::new(simple());
        let params = Params {
            rollouts: 7,
            max_depth: 3,
            ..Params::default()
        };
        let req = StrategyRequest::user("Three boxes hold four apples each. How many apples?");
        let ctx = Ctx::new(mock.clone(), Budget::default());
        let s = search(&ctx, &req, &params).await.unwrap();
        let nodes = &s.nodes;
        assert_eq!(nodes[0].visits, 7);
        let below: u32 = nodes[0].children.iter().map(|&c| nodes[c].visits).sum();
        assert_eq!(below, 7);
        for (i, n) in nodes.iter().enumerate() {
            let below: u32 = n.children.iter().map(|&c| nodes[c].visits).sum();
            assert!(n.visits >= below, "node {i}");
            assert!(n.depth <= 3);
            if n.depth == 3 {
                assert_eq!(n.action, Some(Action::RemainingSteps), "node {i}");
            }
            if n.answer.is_some() {
                assert!(n.children.is_empty(), "terminal node {i} was expanded");
                assert_eq!(n.answer.as_deref(), Some("12"));
            }
            if n.action == Some(Action::Reanswer) {
                let parent = n.parent.unwrap();
                assert_eq!(nodes[parent].action, Some(Action::SubQuestion));
            }
            if n.action == Some(Action::Rephrase) {
                assert_eq!(n.depth, 1);
            }
            // Root children of one action at most.
            let mut actions: Vec<_> = n.children.iter().map(|&c| nodes[c].action).collect();
            let len = actions.len();
            actions.dedup();
            assert_eq!(actions.len(), len);
        }
        // One call per step; every rollout ended on an answer (all values are 1).
        assert_eq!(mock.calls(), nodes.len() - 1);
        assert!(!s.terminals.is_empty());
        assert!((nodes[0].value - 7.0).abs() < 1e-9);
        // Settings: A2 gets the long cap, the other actions the step cap, all at 0.7.
        for r in mock.requests() {
            assert_eq!(r.sampling.temperature, Some(0.7));
            let long = user_text(&r).contains(REMAINING_STEPS);
            assert_eq!(r.sampling.max_tokens, Some(if long { 1024 } else { 256 }));
            assert_eq!(r.messages[0].content, SYSTEM);
        }
        // Calls are made in node order: each step's prompt holds the steps before it.
        for (r, n) in mock.requests().iter().zip(nodes.iter().skip(1)) {
            let u = user_text(r);
            assert!(u.contains(n.action.unwrap().instruction()));
            let shown = u.matches("\nStep ").count() + usize::from(u.starts_with("Step "));
            assert_eq!(shown as u32, n.depth - 1);
            let parent = &nodes[n.parent.unwrap()];
            assert!(
                u.contains(&format!("Step {}: {}", parent.depth.max(1), parent.step))
                    || parent.depth == 0
            );
        }
    }

    #[tokio::test]
    async fn same_seed_same_tree_and_depth_one_is_chain_of_thought() {
        let shape = |seed| async move {
            let mock = Arc::new(simple());
            let params = Params {
                seed,
                ..Params::default()
            };
            let ctx = Ctx::new(mock.clone(), Budget::default());
            let req = StrategyRequest::user("q");
            let s = search(&ctx, &req, &params).await.unwrap();
            s.nodes
                .iter()
                .map(|n| (n.parent, n.action))
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(3).await, shape(3).await);

        // Depth 1: the root only takes A2; later rollouts revisit that terminal without calls.
        let mock = Arc::new(simple());
        let params = Params {
            max_depth: 1,
            mutual_consistency: false,
            ..Params::default()
        };
        let strategy = RStar::new(params).unwrap();
        let out = run(
            &strategy,
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.calls(), 1);
        assert_eq!(out.answer, "Adding up gives 12. The answer is 12.");
    }

    /// Depth 2, four rollouts: the root's four actions are each tried once and each
    /// continued by A2. A1, A2 and A5 lines end in 5, the sub-question line in 7. The
    /// discriminator (whatever the prefix) completes to `disc`.
    fn forked(disc: &'static str) -> MockBackend {
        MockBackend::new(move |r, _| {
            let u = user_text(r);
            Ok(if u.contains(COMPLETE) {
                disc.to_string()
            } else if u.contains(SUB_QUESTION) {
                "Sub-question: what is 3 + 4? Sub-answer: 7".to_string()
            } else if u.contains(REPHRASE) {
                "We need the sum.".to_string()
            } else if u.contains(REMAINING_STEPS) && u.contains("Sub-answer: 7") {
                "Using the sub-answer, the answer is 7.".to_string()
            } else if u.contains(REMAINING_STEPS) {
                "Adding gives 5. The answer is 5.".to_string()
            } else {
                "First add the numbers.".to_string()
            })
        })
    }

    fn forked_params(mutual_consistency: bool) -> Params {
        Params {
            rollouts: 4,
            max_depth: 2,
            mutual_consistency,
            ..Params::default()
        }
    }

    #[tokio::test]
    async fn mutual_consistency_changes_the_pick() {
        let req = StrategyRequest::user("What is 3 + 4?");
        // Without the check, the majority answer 5 (three trajectories of four) wins.
        let mock = Arc::new(forked("The answer is 7."));
        let plain = RStar::new(forked_params(false)).unwrap();
        let out = run(&plain, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(mock.calls(), 7);
        assert!(out.answer.ends_with("The answer is 5."), "{}", out.answer);
        assert_eq!(out.candidates.len(), 4);

        // With it, only the sub-question trajectory is confirmed by the discriminator.
        let mock = Arc::new(forked("The answer is 7."));
        let checked = RStar::new(forked_params(true)).unwrap();
        let out = run(&checked, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        let sent = mock.requests();
        let disc: Vec<_> = sent
            .iter()
            .filter(|r| user_text(r).contains(COMPLETE))
            .collect();
        assert_eq!(disc.len(), 4);
        assert_eq!(sent.len(), 11);
        assert!(disc.iter().all(|r| r.sampling.temperature == Some(0.2)));
        // The prefix never holds the final step, and holds the first of a two-step path.
        assert!(
            disc.iter()
                .all(|r| !user_text(r).contains("The answer is 5"))
        );
        assert!(
            disc.iter()
                .any(|r| user_text(r).contains("Step 1: Sub-question: what is 3 + 4?"))
        );
        // The whole reasoning is returned, not just the number.
        assert_eq!(
            out.answer,
            "Sub-question: what is 3 + 4? Sub-answer: 7\n\nUsing the sub-answer, the answer is 7."
        );
        assert_eq!(
            out.candidates
                .iter()
                .filter(|c| c.contains(", consistent,"))
                .count(),
            1
        );

        // A discriminator that agrees with nobody: fall back to all trajectories.
        let mock = Arc::new(forked("I cannot tell."));
        let out = run(&checked, mock, &req, Budget::default()).await.unwrap();
        assert!(out.answer.ends_with("The answer is 5."));
    }

    #[test]
    fn terminal_values_by_majority_or_share() {
        let mock: Arc<dyn crate::Backend> = Arc::new(simple());
        let ctx = Ctx::new(mock, Budget::default());
        let req = StrategyRequest::user("q");
        let mut params = Params::default();
        let node = |answer: Option<&str>| Node {
            action: Some(Action::RemainingSteps),
            step: String::new(),
            parent: Some(0),
            children: Vec::new(),
            depth: 1,
            visits: 0,
            value: 0.0,
            answer: answer.map(String::from),
        };
        let build = || {
            let mut nodes = vec![node(None)];
            nodes[0].parent = None;
            nodes[0].depth = 0;
            nodes.extend([
                node(Some("5")),
                node(Some("7")),
                node(Some("5.0")),
                node(None),
            ]);
            nodes
        };
        let values = |params: &Params| {
            let s = Search {
                ctx: &ctx,
                request: &req,
                params,
                question: "q".into(),
                system: SYSTEM.into(),
                nodes: build(),
                terminals: vec![1, 2, 3],
                rng: Rng::new(0),
            };
            (1..5).map(|i| s.evaluate(i)).collect::<Vec<f64>>()
        };
        assert_eq!(values(&params), vec![1.0, 0.0, 1.0, 0.0]);
        params.reward = Reward::Share;
        let v = values(&params);
        assert!((v[0] - 2.0 / 3.0).abs() < 1e-9 && (v[1] - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(v[3], 0.0);
    }

    #[test]
    fn pick_prefers_consistent_majority_then_score() {
        let c = |node, answer: &str, score| Candidate {
            node,
            answer: answer.into(),
            score,
        };
        let cands = vec![
            c(1, "5", 0.5),
            c(2, "7", 0.9),
            c(3, "5.0", 1.0),
            c(4, "7", 0.4),
        ];
        // Answers tie 2-2: the first seen (5) wins, its best-valued trajectory.
        assert_eq!(pick(&cands, None), Some(2));
        assert_eq!(pick(&cands, Some(&[false, true, false, true])), Some(1));
        assert_eq!(pick(&cands, Some(&[false; 4])), Some(2));
        assert_eq!(pick(&[], None), None);
    }

    #[tokio::test]
    async fn budget_cut_returns_the_first_answer_found() {
        let mock = Arc::new(forked("The answer is 7."));
        // The first step (about 70 prompt words) fits, a few more do not.
        let budget = Budget {
            max_total_tokens: Some(200),
            max_duration: None,
        };
        let strategy = RStar::new(forked_params(true)).unwrap();
        let out = run(
            &strategy,
            mock.clone(),
            &StrategyRequest::user("What is 3 + 4?"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert!(mock.calls() < 11);
        assert!(out.answer.contains("he answer is"), "{}", out.answer);
        assert!(out.usage.total_tokens() >= 200);

        // Cut before any answer: the newest partial reasoning is returned.
        let mock = Arc::new(MockBackend::constant("Let me think about it."));
        let budget = Budget {
            max_total_tokens: Some(100),
            max_duration: None,
        };
        let out = run(
            &strategy,
            mock,
            &StrategyRequest::user("What is 3 + 4?"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert!(
            out.answer.starts_with("Let me think about it."),
            "{}",
            out.answer
        );
    }

    /// The tree as plain data: parent, action, step, visits, value, answer of each node.
    type Shape = Vec<(
        Option<usize>,
        Option<Action>,
        String,
        u32,
        f64,
        Option<String>,
    )>;

    fn shape_of(nodes: &[Node]) -> Shape {
        nodes
            .iter()
            .map(|n| {
                (
                    n.parent,
                    n.action,
                    n.step.clone(),
                    n.visits,
                    n.value,
                    n.answer.clone(),
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn root_rollouts_run_at_once_and_build_the_sequential_tree() {
        let params = Params {
            rollouts: 6,
            ..Params::default()
        };
        let req = StrategyRequest::user("Three boxes hold four apples each. How many apples?");
        let delay = std::time::Duration::from_millis(100);
        for seed in 0..8 {
            let params = Params {
                seed,
                ..params.clone()
            };
            // Concurrent: the four root actions are tried by four rollouts at once.
            let slow = Arc::new(crate::mock::DelayedBackend::new(simple(), delay));
            let ctx = Ctx::new(slow.clone(), Budget::default());
            let started = tokio::time::Instant::now();
            let s = search(&ctx, &req, &params).await.unwrap();
            let elapsed = started.elapsed();
            assert_eq!(slow.max_in_flight(), 4, "seed {seed}");
            let calls = slow.inner().calls();
            assert_eq!(calls, s.nodes.len() - 1);
            // Fewer delays than calls: the wave's branches overlapped.
            assert!(
                elapsed < delay * calls as u32 - delay * 3,
                "seed {seed}: {elapsed:?} for {calls} calls"
            );

            // The same rollouts one after another give the same tree, node for node.
            let mock = Arc::new(simple());
            let ctx = Ctx::new(mock.clone(), Budget::default());
            let mut one_by_one = Search {
                ctx: &ctx,
                request: &req,
                params: &params,
                question: req.query().unwrap().to_string(),
                system: SYSTEM.into(),
                nodes: s.nodes[..1].to_vec(),
                terminals: Vec::new(),
                rng: Rng::new(seed),
            };
            one_by_one.nodes[0].children.clear();
            one_by_one.nodes[0].visits = 0;
            one_by_one.nodes[0].value = 0.0;
            for k in 0..params.rollouts {
                one_by_one.rollout(&mut rollout_rng(seed, k)).await.unwrap();
            }
            assert_eq!(
                shape_of(&one_by_one.nodes),
                shape_of(&s.nodes),
                "seed {seed}"
            );
            assert_eq!(one_by_one.terminals, s.terminals);
            assert_eq!(mock.calls(), calls);
        }
    }

    #[test]
    fn registered_with_defaults_and_checked_params() {
        let info = crate::strategies::catalogue()
            .into_iter()
            .find(|i| i.slug == SLUG)
            .unwrap();
        assert_eq!(info.params.get("rollouts"), Some(&serde_json::json!(5)));
        assert_eq!(info.params.get("max_depth"), Some(&serde_json::json!(3)));
        assert_eq!(
            info.params.get("exploration"),
            Some(&serde_json::json!(1.4))
        );
        assert!(crate::strategies::build(SLUG, &info.params).is_ok());
        let mut bad = info.params.clone();
        bad.insert("rollouts".into(), serde_json::json!(0));
        assert!(matches!(
            crate::strategies::build(SLUG, &bad),
            Err(SpecError::BadParameter { .. })
        ));
        let mut unknown = info.params.clone();
        unknown.insert("depth".into(), serde_json::json!(2));
        assert!(crate::strategies::build(SLUG, &unknown).is_err());
    }
}
