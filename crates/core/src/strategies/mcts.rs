//! `mcts`: Monte-Carlo tree search over dialogue states.
//!
//! A state is a conversation ending in a user turn. Expanding a state asks the model for
//! `candidates` replies in one n-request; each reply becomes a child whose next user turn
//! is simulated by the model (these calls run concurrently). A simulation then rolls the
//! conversation `depth` turns further (one reply, one simulated user turn per step), the
//! model scores the reached state 0-1, and the score is backed up the path (UCT selection
//! with `exploration`). The answer is the reply of the root's most visited child.
//!
//! Rollouts sample one reply per step, not three: only one is used (the reference asks for
//! three and keeps a random one).
//!
//! Concurrency: a simulation's visits are known as soon as its node is chosen, only its
//! value waits for its calls. So the next simulation selects and expands while earlier ones
//! still roll out, whenever its selection does not depend on a value still out (a node
//! with an unvisited child takes the first one, whatever the values; one child is taken
//! alone); otherwise it waits for them. Values are backed up in simulation order, so the
//! tree, the values and the answer are those of the simulations one after another.

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, join_all};
use futures::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::{first_number, one, samples, temp};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::{Message, Role, Sampling};

const NEXT_USER: &str = "Based on this conversation, what might the user ask or say next? \
                         Provide a likely user query.";
const EVALUATE: &str = "Evaluate the quality of this conversation on a scale from 0 to 1, \
                        where 0 is poor and 1 is excellent. Consider factors such as coherence, \
                        relevance, and engagement. Respond with only a number.";

/// The parameters of `mcts`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Search iterations (select, expand, simulate, back up).
    pub simulations: u32,
    /// UCT exploration weight.
    pub exploration: f64,
    /// Turns rolled out after an expansion before the state is scored.
    pub depth: u32,
    /// Candidate replies per expansion (one n-request).
    pub candidates: u32,
    /// Temperature of replies and simulated user turns.
    pub temperature: f32,
    /// Temperature of the 0-1 state score.
    pub eval_temperature: f32,
    /// Token cap of a simulated user turn.
    pub user_max_tokens: u32,
    /// Token cap of a state score.
    pub eval_max_tokens: u32,
    /// A state with more turns than this is terminal.
    pub max_turns: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            simulations: 2,
            exploration: 0.2,
            depth: 1,
            candidates: 3,
            temperature: 1.0,
            eval_temperature: 0.1,
            user_max_tokens: 256,
            eval_max_tokens: 16,
            max_turns: 10,
        }
    }
}

/// The `mcts` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct Mcts {
    params: Params,
}

impl Mcts {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |m: &str| SpecError::BadParameter {
            approach: Self::SLUG.into(),
            message: m.into(),
        };
        if params.simulations == 0 {
            return Err(bad("simulations must be at least 1"));
        }
        if params.candidates == 0 {
            return Err(bad("candidates must be at least 1"));
        }
        if !params.exploration.is_finite() || params.exploration < 0.0 {
            return Err(bad("exploration must be a finite number >= 0"));
        }
        Ok(Self { params })
    }
}

/// One node: a conversation ending in a user turn, reached by the assistant `reply`.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub messages: Vec<Message>,
    pub reply: Option<String>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub visits: u32,
    pub value: f64,
}

struct Search<'a> {
    ctx: &'a Ctx,
    request: &'a StrategyRequest,
    params: &'a Params,
    nodes: Vec<Node>,
    /// Per node: simulations through it whose value is not backed up yet.
    pending: Vec<u32>,
}

fn is_terminal(params: &Params, messages: &[Message]) -> bool {
    let turns = messages.iter().filter(|m| m.role != Role::System).count();
    turns > params.max_turns
        || messages
            .last()
            .is_some_and(|m| m.content.to_lowercase().contains("goodbye"))
}

/// Rolls `depth` turns on from `messages` and scores the reached state.
async fn simulate(
    ctx: &Ctx,
    request: &StrategyRequest,
    params: &Params,
    mut messages: Vec<Message>,
) -> Result<f64, StrategyError> {
    for _ in 0..params.depth {
        if is_terminal(params, &messages) {
            break;
        }
        let reply = one(
            ctx,
            request,
            "rollout reply",
            messages.clone(),
            &temp(params.temperature),
        )
        .await?;
        messages = Search::next_user(ctx.clone(), request, params, &messages, &reply).await?;
    }
    // Score the conversation so far, without the pending user turn.
    let mut ask = messages;
    if ask.last().is_some_and(|m| m.role == Role::User) {
        ask.pop();
    }
    ask.push(Message::user(EVALUATE));
    let step: Sampling = temp(params.eval_temperature).with_max_tokens(params.eval_max_tokens);
    let text = one(ctx, request, "score state", ask, &step).await?;
    Ok(first_number(&text).map_or(0.5, |v| v.clamp(0.0, 1.0)))
}

impl Search<'_> {
    fn is_terminal(&self, messages: &[Message]) -> bool {
        is_terminal(self.params, messages)
    }

    fn uct(&self, parent: usize, child: usize) -> f64 {
        let (p, c) = (&self.nodes[parent], &self.nodes[child]);
        if c.visits == 0 {
            return f64::INFINITY;
        }
        let n = f64::from(c.visits);
        c.value / n + self.params.exploration * (f64::from(p.visits + 1).ln() / n).sqrt()
    }

    /// Descends by UCT to a node without children; `None` while the choice depends on a
    /// value not backed up yet. A node with an unvisited child takes the first one (its UCT
    /// is infinite), and a single child is taken, whatever the values.
    fn select(&self) -> Option<usize> {
        let mut node = 0;
        while !self.nodes[node].children.is_empty() {
            let children = &self.nodes[node].children;
            if let Some(&c) = children.iter().find(|&&c| self.nodes[c].visits == 0) {
                node = c;
                continue;
            }
            if children.len() > 1 && children.iter().any(|&c| self.pending[c] > 0) {
                return None;
            }
            let mut best = children[0];
            for &c in children.iter().skip(1) {
                if self.uct(node, c) > self.uct(node, best) {
                    best = c;
                }
            }
            node = best;
        }
        Some(node)
    }

    /// The simulated next user turn after `messages` + the assistant `reply`.
    async fn next_user(
        ctx: Ctx,
        request: &StrategyRequest,
        params: &Params,
        messages: &[Message],
        reply: &str,
    ) -> Result<Vec<Message>, StrategyError> {
        let mut convo = messages.to_vec();
        convo.push(Message::assistant(reply));
        let mut ask = convo.clone();
        ask.push(Message::user(NEXT_USER));
        let step = temp(params.temperature).with_max_tokens(params.user_max_tokens);
        let query = one(&ctx, request, "simulate user turn", ask, &step).await?;
        convo.push(Message::user(query.trim()));
        Ok(convo)
    }

    /// Adds `candidates` children to `node`; returns the first one.
    async fn expand(&mut self, node: usize) -> Result<usize, StrategyError> {
        let messages = self.nodes[node].messages.clone();
        let added = self.candidate_children(node, &messages).await?;
        for (reply, state) in added {
            let id = self.nodes.len();
            self.nodes.push(Node {
                messages: state,
                reply: Some(reply),
                parent: Some(node),
                children: Vec::new(),
                visits: 0,
                value: 0.0,
            });
            self.pending.push(0);
            self.nodes[node].children.push(id);
        }
        // Replies are exchangeable samples: the first is as random a pick as any.
        self.nodes[node].children.first().copied().ok_or_else(|| {
            StrategyError::Backend(crate::BackendError::Protocol(
                "the backend returned no choices".into(),
            ))
        })
    }

    /// The candidate replies to `messages` and the states they lead to.
    async fn candidate_children(
        &self,
        node: usize,
        messages: &[Message],
    ) -> Result<Vec<(String, Vec<Message>)>, StrategyError> {
        let replies = samples(
            self.ctx,
            self.request,
            "expand: candidate replies",
            messages.to_vec(),
            &temp(self.params.temperature),
            self.params.candidates,
        )
        .await?;
        if node == 0 {
            if let Some(first) = replies.first() {
                self.ctx.offer(first.trim());
            }
        }
        let states = join_all(replies.iter().map(|r| {
            Self::next_user(
                self.ctx.clone(),
                self.request,
                self.params,
                messages,
                r.trim(),
            )
        }))
        .await;
        replies
            .into_iter()
            .zip(states)
            .map(|(reply, state)| Ok((reply.trim().to_string(), state?)))
            .collect()
    }

    /// The nodes from `node` up to the root.
    fn path(&self, node: usize) -> Vec<usize> {
        let mut path = vec![node];
        let mut at = node;
        while let Some(p) = self.nodes[at].parent {
            path.push(p);
            at = p;
        }
        path
    }

    /// A simulation from `node` starts: its visits count now, its value is pending.
    fn visit(&mut self, node: usize) {
        for i in self.path(node) {
            self.nodes[i].visits += 1;
            self.pending[i] += 1;
        }
    }

    /// The value of the simulation from `node` comes back.
    fn back_up(&mut self, node: usize, value: f64) {
        for i in self.path(node) {
            self.nodes[i].value += value;
            self.pending[i] = self.pending[i].saturating_sub(1);
        }
    }

    /// The root's most visited child (ties: higher mean value, then first).
    fn best_child(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &c in &self.nodes[0].children {
            let better = match best {
                None => true,
                Some(b) => {
                    let (nc, nb) = (&self.nodes[c], &self.nodes[b]);
                    let mean = |n: &Node| n.value / f64::from(n.visits.max(1));
                    nc.visits > nb.visits || (nc.visits == nb.visits && mean(nc) > mean(nb))
                }
            };
            if better {
                best = Some(c);
            }
        }
        best
    }
}

/// Runs the search and returns the tree (node 0 is the root).
pub(crate) async fn search(
    ctx: &Ctx,
    request: &StrategyRequest,
    params: &Params,
) -> Result<Vec<Node>, StrategyError> {
    request.query()?;
    let root = Node {
        messages: request.messages.clone(),
        reply: None,
        parent: None,
        children: Vec::new(),
        visits: 0,
        value: 0.0,
    };
    let mut s = Search {
        ctx,
        request,
        params,
        nodes: vec![root],
        pending: vec![0],
    };
    // Simulations rolling out, in order (their values are backed up in this order), and
    // their nodes.
    let mut running: FuturesOrdered<BoxFuture<'_, Result<f64, StrategyError>>> =
        FuturesOrdered::new();
    let mut nodes_running: VecDeque<usize> = VecDeque::new();
    let mut done: VecDeque<f64> = VecDeque::new();
    let mut started = 0;
    let mut finished = 0;
    while finished < params.simulations {
        // Values in simulation order, before any selection.
        while let Some(value) = done.pop_front() {
            let node = nodes_running.pop_front().unwrap_or(0);
            s.back_up(node, value);
            tracing::debug!(simulation = finished, node, value, "mcts simulation");
            finished += 1;
            if let Some(reply) = s.best_child().and_then(|b| s.nodes[b].reply.clone()) {
                ctx.offer(reply);
            }
        }
        if finished >= params.simulations {
            break;
        }
        let chosen = if started < params.simulations {
            s.select()
        } else {
            None
        };
        let Some(mut node) = chosen else {
            // Wait for the oldest simulation.
            match running.next().await {
                Some(value) => done.push_back(value?),
                None => break,
            }
            continue;
        };
        if !s.is_terminal(&s.nodes[node].messages) || node == 0 {
            // Expand while the simulations already started go on rolling out.
            let expansion = s.expand(node);
            tokio::pin!(expansion);
            node = loop {
                tokio::select! {
                    biased;
                    expanded = &mut expansion => break expanded?,
                    Some(value) = running.next(), if !running.is_empty() => {
                        done.push_back(value?);
                    }
                }
            };
        }
        s.visit(node);
        let messages = s.nodes[node].messages.clone();
        running.push_back(simulate(ctx, request, params, messages).boxed());
        nodes_running.push_back(node);
        started += 1;
    }
    Ok(s.nodes)
}

impl Approach for Mcts {
    const SLUG: &'static str = "mcts";
    const DESCRIPTION: &'static str =
        "Monte-Carlo tree search over dialogue states (UCT, model-scored states)";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Mcts {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let nodes = search(ctx, request, &self.params).await?;
        let root = &nodes[0];
        let mut children: Vec<&Node> = root.children.iter().map(|&c| &nodes[c]).collect();
        // Most visited first (stable: ties keep generation order, then by mean value).
        children.sort_by(|a, b| {
            b.visits.cmp(&a.visits).then_with(|| {
                let mean = |n: &Node| n.value / f64::from(n.visits.max(1));
                mean(b).total_cmp(&mean(a))
            })
        });
        let replies: Vec<String> = children.iter().filter_map(|n| n.reply.clone()).collect();
        let first = replies.first().cloned().unwrap_or_default();
        Ok(Answer::one(first).with_candidates(replies))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::ChatRequest;

    fn last_user(r: &ChatRequest) -> &str {
        r.last_user().unwrap_or_default()
    }

    /// Replies "reply-<index>", user turns "next?", scores: a conversation containing
    /// "reply-1" scores 0.9, others 0.2.
    fn scripted() -> MockBackend {
        MockBackend::new(|r, i| {
            let q = last_user(r);
            Ok(if q == EVALUATE {
                let convo: String = r.messages.iter().map(|m| m.content.as_str()).collect();
                if convo.contains("reply-1") {
                    "0.9"
                } else {
                    "0.2"
                }
                .to_string()
            } else if q == NEXT_USER {
                "next?".to_string()
            } else {
                format!("reply-{i}")
            })
        })
    }

    #[tokio::test]
    async fn default_search_makes_fourteen_calls_and_visits_match() {
        let mock = Arc::new(scripted());
        let req = StrategyRequest::user("hello");
        let ctx = Ctx::new(mock.clone(), Budget::default());
        let nodes = search(&ctx, &req, &Params::default()).await.unwrap();
        // Root visited once per simulation, and so are its children in total.
        assert_eq!(nodes[0].visits, 2);
        let child_visits: u32 = nodes[0].children.iter().map(|&c| nodes[c].visits).sum();
        assert_eq!(child_visits, 2);
        assert_eq!(nodes[0].children.len(), 3);
        // Two expansions of three children each, plus the root.
        assert_eq!(nodes.len(), 7);
        let sent = mock.requests();
        assert_eq!(sent.len(), 14);
        let expansions: Vec<_> = sent.iter().filter(|r| r.n == 3).collect();
        assert_eq!(expansions.len(), 2);
        assert!(
            expansions
                .iter()
                .all(|r| r.sampling.temperature == Some(1.0))
        );
        let scores: Vec<_> = sent.iter().filter(|r| last_user(r) == EVALUATE).collect();
        assert_eq!(scores.len(), 2);
        assert!(scores.iter().all(|r| r.sampling.temperature == Some(0.1)));
        assert_eq!(ctx.usage().calls, 14);
    }

    #[tokio::test]
    async fn visits_follow_simulations_and_best_child_wins() {
        let mock = Arc::new(scripted());
        let params = Params {
            simulations: 6,
            exploration: 0.0,
            ..Params::default()
        };
        let strategy = Mcts::new(params.clone()).unwrap();
        let req = StrategyRequest::user("hello");
        let ctx = Ctx::new(mock.clone(), Budget::default());
        let nodes = search(&ctx, &req, &params).await.unwrap();
        assert_eq!(nodes[0].visits, 6);
        for (i, n) in nodes.iter().enumerate() {
            let below: u32 = n.children.iter().map(|&c| nodes[c].visits).sum();
            // A node's visits are its own simulations plus its children's.
            assert!(n.visits >= below, "node {i}");
        }
        // Unvisited children are tried first; then greedy UCT keeps choosing reply-1.
        let out = run(&strategy, mock, &req, Budget::default()).await.unwrap();
        assert_eq!(out.answer, "reply-1");
        assert_eq!(out.candidates.len(), 3);
    }

    type Shape = Vec<(Option<usize>, Option<String>, u32, f64)>;

    fn shape_of(nodes: &[Node]) -> Shape {
        nodes
            .iter()
            .map(|n| (n.parent, n.reply.clone(), n.visits, n.value))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn next_simulation_expands_while_the_last_rolls_out() {
        let delay = std::time::Duration::from_millis(100);
        let slow = Arc::new(crate::mock::DelayedBackend::new(scripted(), delay));
        let req = StrategyRequest::user("hello");
        let ctx = Ctx::new(slow.clone(), Budget::default());
        let started = tokio::time::Instant::now();
        let nodes = search(&ctx, &req, &Params::default()).await.unwrap();
        // One after another: 2 x (expansion 2 + rollout reply, user turn, score 3) = 10
        // delays. The second expansion (child 2: unvisited, so chosen whatever the first
        // value) overlaps the first rollout: 2 + 2 + 3.
        assert_eq!(started.elapsed(), delay * 7);
        assert_eq!(slow.inner().calls(), 14);
        assert!(slow.max_in_flight() >= 4, "{}", slow.max_in_flight());
        let plain = Arc::new(scripted());
        let ctx = Ctx::new(plain, Budget::default());
        let instant = search(&ctx, &req, &Params::default()).await.unwrap();
        assert_eq!(shape_of(&nodes), shape_of(&instant));
    }

    #[tokio::test(start_paused = true)]
    async fn value_dependent_selections_wait_and_the_tree_does_not_change() {
        let params = Params {
            simulations: 7,
            exploration: 0.0,
            ..Params::default()
        };
        let req = StrategyRequest::user("hello");
        let slow = Arc::new(crate::mock::DelayedBackend::new(
            scripted(),
            std::time::Duration::from_millis(100),
        ));
        let ctx = Ctx::new(slow.clone(), Budget::default());
        let overlapped = search(&ctx, &req, &params).await.unwrap();
        let plain = Arc::new(scripted());
        let ctx = Ctx::new(plain.clone(), Budget::default());
        let instant = search(&ctx, &req, &params).await.unwrap();
        assert_eq!(shape_of(&overlapped), shape_of(&instant));
        assert_eq!(slow.inner().calls(), plain.calls());
        assert_eq!(overlapped[0].visits, 7);
        // Greedy UCT keeps choosing the reply-1 branch (score 0.9) once values are in.
        let best = overlapped[0]
            .children
            .iter()
            .copied()
            .max_by_key(|&c| overlapped[c].visits)
            .unwrap();
        assert_eq!(overlapped[best].reply.as_deref(), Some("reply-1"));
        assert!(overlapped[best].visits >= 4);
    }

    #[tokio::test]
    async fn budget_cut_returns_offered_reply() {
        let mock = Arc::new(scripted());
        // The first expansion (3 one-word replies on a 1-word prompt) fits; more does not.
        let budget = Budget {
            max_total_tokens: Some(8),
            max_duration: None,
        };
        let out = run(
            &Mcts::new(Params::default()).unwrap(),
            mock,
            &StrategyRequest::user("hello"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "reply-0");
    }

    #[test]
    fn rejects_bad_params() {
        assert!(
            Mcts::new(Params {
                simulations: 0,
                ..Params::default()
            })
            .is_err()
        );
    }
}
