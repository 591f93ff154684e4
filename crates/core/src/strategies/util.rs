//! Small helpers shared by the strategies: prompts with the caller's system prompt,
//! step sampling, n-sample calls, and parsing of model ratings.

use crate::samples::confidence_top_k;
use crate::strategy::{Ctx, StrategyError, StrategyRequest};
use crate::types::{ChatRequest, Message, Sampling};

/// `system` (when there is one) then one user message.
pub(crate) fn prompt(system: Option<&str>, user: impl Into<String>) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(user));
    messages
}

/// `chat` asking for the log-probabilities a sample's confidence is made of, where the
/// backend reports them (else unchanged).
pub(crate) fn with_confidences(ctx: &Ctx, chat: ChatRequest) -> ChatRequest {
    match confidence_top_k(&ctx.backend().capabilities()) {
        Some(k) => chat.with_logprobs(k),
        None => chat,
    }
}

/// Step settings with a temperature.
pub(crate) fn temp(t: f32) -> Sampling {
    Sampling::default().with_temperature(t)
}

/// `n` samples of `messages` in one request (the caller's settings overlaid by `step`).
pub(crate) async fn samples(
    ctx: &Ctx,
    request: &StrategyRequest,
    purpose: &str,
    messages: Vec<Message>,
    step: &Sampling,
    n: u32,
) -> Result<Vec<String>, StrategyError> {
    let chat = request.chat(messages, step).with_n(n.max(1));
    Ok(ctx.call(purpose, chat).await?.texts())
}

/// One sample of `messages`.
pub(crate) async fn one(
    ctx: &Ctx,
    request: &StrategyRequest,
    purpose: &str,
    messages: Vec<Message>,
    step: &Sampling,
) -> Result<String, StrategyError> {
    ctx.text(purpose, request.chat(messages, step)).await
}

/// The first number in `text` (optional sign, digits, optional decimals).
pub(crate) fn first_number(text: &str) -> Option<f64> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let next_digit = chars.get(k + 1).is_some_and(|(_, d)| d.is_ascii_digit());
        let starts = c.is_ascii_digit() || (matches!(c, '-' | '+' | '.') && next_digit);
        if !starts {
            continue;
        }
        let mut end = text.len();
        let mut seen_dot = c == '.';
        for &(j, d) in chars.iter().skip(k + 1) {
            if d == '.' && !seen_dot {
                seen_dot = true;
            } else if !d.is_ascii_digit() {
                end = j;
                break;
            }
        }
        let number = text.get(i..end)?.trim_end_matches('.');
        return number.parse().ok();
    }
    None
}

/// Byte offset just past the first case-insensitive (ASCII) occurrence of `word`.
fn after_word(text: &str, word: &str) -> Option<usize> {
    text.char_indices().find_map(|(i, _)| {
        let end = i + word.len();
        text.get(i..end)
            .filter(|w| w.eq_ignore_ascii_case(word))
            .map(|_| end)
    })
}

/// A rating on a 0..=`max` scale: the number after "Score" / "Rating" (also
/// "Score: 7/10"), else the first number of the text; clamped to the scale.
pub(crate) fn parse_rating(text: &str, max: f64) -> Option<f64> {
    let labelled = ["score", "rating"].iter().find_map(|w| {
        let rest = text.get(after_word(text, w)?..)?;
        // The number must follow the label closely ("Score: 7", "rating = **8**").
        let near: String = rest.chars().take(12).collect();
        first_number(&near)
    });
    labelled
        .or_else(|| first_number(text))
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, max))
}

/// A list of candidates as "Solution 1:\n...\n\nSolution 2:\n..." for a prompt.
pub(crate) fn numbered(label: &str, items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{label} {}:\n{}", i + 1, s.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The text inside `<tag>...</tag>` (the rest of the text when the closing tag is
/// missing), trimmed; `None` when the opening tag is absent.
pub(crate) fn tagged<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let rest = text.get(start..)?;
    let inner = match rest.find(&close) {
        Some(end) => rest.get(..end)?,
        None => rest,
    };
    Some(inner.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings() {
        assert_eq!(
            parse_rating("Score: 7/10\nExplanation: ok", 10.0),
            Some(7.0)
        );
        assert_eq!(parse_rating("I give it **Rating: 8.5**", 10.0), Some(8.5));
        assert_eq!(parse_rating("step 1 ... score = 3", 10.0), Some(3.0));
        assert_eq!(parse_rating("0.8", 1.0), Some(0.8));
        assert_eq!(parse_rating("It is 12 out of 10", 10.0), Some(10.0));
        assert_eq!(parse_rating("no idea", 10.0), None);
        assert_eq!(parse_rating("Étape 1. SCORE -> 6.", 10.0), Some(6.0));
        assert_eq!(first_number("x -3.5y"), Some(-3.5));
        assert_eq!(first_number("v.2 and 7."), Some(0.2));
    }

    #[test]
    fn tags_and_lists() {
        assert_eq!(tagged("a <output> x </output> b", "output"), Some("x"));
        assert_eq!(tagged("a <output> x é", "output"), Some("x é"));
        assert_eq!(tagged("none", "output"), None);
        assert_eq!(
            numbered("Solution", &["a".into(), " b ".into()]),
            "Solution 1:\na\n\nSolution 2:\nb"
        );
        assert_eq!(prompt(Some(" "), "q"), vec![Message::user("q")]);
        assert_eq!(prompt(Some("s"), "q").len(), 2);
    }
}
