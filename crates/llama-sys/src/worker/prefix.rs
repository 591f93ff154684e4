//! Prompt-prefix reuse: the KV cells of recent requests (their prompts, then prompt and
//! reply) kept as saved sequence states, so that a new prompt starts from the longest
//! common token prefix of a kept one and evaluates only the rest (as llama.cpp's server
//! does with `cache_prompt`): the next turn of a conversation, or a prompt that quotes a
//! reply after the conversation that produced it, starts after that reply.
//!
//! A kept state is restored into an emptied cache, where its cells land where a fresh
//! evaluation would have put them; the cells past the common prefix are then dropped.
//! Keeping the cells inside the live cache instead (a sequence of their own) moves the
//! new cells elsewhere, which changes llama.cpp's attention arithmetic in the last bits and
//! so, now and then, a seeded sample. This module keeps the bookkeeping only (which
//! tokens, which state, least recently used); the worker saves and restores.

use llama_cpp_2::token::LlamaToken;

/// One kept prompt: its tokens, its saved state and its size, when it was last used.
#[derive(Debug, Clone)]
struct Kept<S> {
    tokens: Vec<LlamaToken>,
    state: S,
    bytes: usize,
    used: u64,
}

/// At most `capacity` kept prompts of at most `max_bytes` together, the least recently
/// used dropped first.
#[derive(Debug)]
pub(crate) struct PrefixCache<S> {
    capacity: usize,
    max_bytes: usize,
    kept: Vec<Kept<S>>,
    clock: u64,
}

impl<S> PrefixCache<S> {
    /// A cache of at most `capacity` prompts (0: reuse is off) holding at most
    /// `max_bytes` of state.
    pub(crate) fn new(capacity: u32, max_bytes: usize) -> Self {
        PrefixCache {
            capacity: capacity as usize,
            max_bytes,
            kept: Vec::new(),
            clock: 0,
        }
    }

    /// The kept prompt of at most `room` tokens (the cells a sequence can take) sharing
    /// the longest token prefix with `prompt`: its state and the length of that prefix
    /// (`None` when none shares a token). It is marked used.
    pub(crate) fn best(&mut self, prompt: &[LlamaToken], room: usize) -> Option<(&S, usize)> {
        let (i, len) = self
            .kept
            .iter()
            .enumerate()
            .filter(|(_, k)| k.tokens.len() <= room)
            .map(|(i, k)| (i, common_prefix(&k.tokens, prompt)))
            .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))?;
        if len == 0 {
            return None;
        }
        self.clock += 1;
        let kept = self.kept.get_mut(i)?;
        kept.used = self.clock;
        Some((&kept.state, len))
    }

    /// The longest token prefix a kept prompt of at most `room` tokens shares with
    /// `prompt` (0: none), without marking it used.
    pub(crate) fn peek(&self, prompt: &[LlamaToken], room: usize) -> usize {
        self.kept
            .iter()
            .filter(|k| k.tokens.len() <= room)
            .map(|k| common_prefix(&k.tokens, prompt))
            .max()
            .unwrap_or(0)
    }

    /// Whether reuse is on (a capacity above 0).
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// How many prompts it keeps at most: of more saved at once, only the last stay.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `prompt` is kept already, tokens and all (nothing to save again).
    pub(crate) fn holds(&self, prompt: &[LlamaToken]) -> bool {
        self.kept.iter().any(|k| k.tokens == prompt)
    }

    /// Keeps `prompt` with its state of `bytes` bytes. It replaces a kept prompt it
    /// extends (a conversation's next turn); the least recently used ones go while there
    /// are `capacity` of them or their bytes and these exceed `max_bytes`. Nothing is kept
    /// when reuse is off, the prompt is empty or its state alone is too large.
    pub(crate) fn keep(&mut self, prompt: &[LlamaToken], state: S, bytes: usize) {
        if prompt.is_empty() || self.capacity == 0 || bytes > self.max_bytes {
            return;
        }
        self.kept.retain(|k| !prompt.starts_with(&k.tokens));
        while self.kept.len() >= self.capacity
            || self.bytes().saturating_add(bytes) > self.max_bytes
        {
            let Some((i, _)) = self.kept.iter().enumerate().min_by_key(|(_, k)| k.used) else {
                break;
            };
            self.kept.swap_remove(i);
        }
        self.clock += 1;
        self.kept.push(Kept {
            tokens: prompt.to_vec(),
            state,
            bytes,
            used: self.clock,
        });
    }

    /// Whether a state of `bytes` bytes can be kept at all.
    pub(crate) fn fits(&self, bytes: usize) -> bool {
        self.capacity > 0 && bytes <= self.max_bytes
    }

    /// Bytes of the kept states.
    pub(crate) fn bytes(&self) -> usize {
        self.kept.iter().map(|k| k.bytes).sum()
    }

    /// Number of kept prompts.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

/// Length of the longest common prefix of two token lists.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&i| LlamaToken(i)).collect()
    }

    #[test]
    fn the_longest_common_prefix_wins() {
        let mut cache = PrefixCache::new(4, 100);
        cache.keep(&toks(&[1, 2, 3, 4]), 'a', 10);
        cache.keep(&toks(&[1, 2, 9]), 'b', 10);
        assert_eq!(
            cache.best(&toks(&[1, 2, 3, 7]), usize::MAX),
            Some((&'a', 3))
        );
        assert_eq!(
            cache.best(&toks(&[1, 2, 9, 9]), usize::MAX),
            Some((&'b', 3))
        );
        assert_eq!(cache.best(&toks(&[5]), usize::MAX), None);
        assert!(cache.holds(&toks(&[1, 2, 9])));
        assert!(!cache.holds(&toks(&[1, 2])));
    }

    #[test]
    fn a_prompt_that_extends_a_kept_one_replaces_it() {
        // A conversation: each turn's prompt extends the previous one.
        let mut cache = PrefixCache::new(4, 100);
        cache.keep(&toks(&[1, 2]), 'a', 10);
        cache.keep(&toks(&[1, 2, 3, 4]), 'b', 10);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.best(&toks(&[1, 2, 3]), usize::MAX), Some((&'b', 3)));
    }

    #[test]
    fn the_least_recently_used_prompt_makes_room() {
        let mut cache = PrefixCache::new(2, 100);
        cache.keep(&toks(&[1]), 'a', 10);
        cache.keep(&toks(&[2]), 'b', 10);
        // `a` is used again, so `b` is the least recently used.
        assert!(cache.best(&toks(&[1, 5]), usize::MAX).is_some());
        cache.keep(&toks(&[3]), 'c', 10);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.best(&toks(&[2]), usize::MAX), None);
        assert_eq!(cache.best(&toks(&[1]), usize::MAX), Some((&'a', 1)));
        assert_eq!(cache.best(&toks(&[3]), usize::MAX), Some((&'c', 1)));
    }

    #[test]
    fn the_bytes_kept_are_bounded() {
        let mut cache = PrefixCache::new(8, 100);
        cache.keep(&toks(&[1]), 'a', 40);
        cache.keep(&toks(&[2]), 'b', 40);
        assert_eq!(cache.bytes(), 80);
        // 40 more do not fit: the least recently used goes.
        cache.keep(&toks(&[3]), 'c', 40);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.bytes(), 80);
        assert_eq!(cache.best(&toks(&[1]), usize::MAX), None);
    }

    #[test]
    fn a_kept_prompt_longer_than_the_room_is_passed_over() {
        let mut cache = PrefixCache::new(4, 100);
        cache.keep(&toks(&[1, 2, 3, 4, 5]), 'a', 10);
        cache.keep(&toks(&[1, 2]), 'b', 10);
        assert_eq!(cache.best(&toks(&[1, 2, 3, 4]), 5), Some((&'a', 4)));
        assert_eq!(cache.best(&toks(&[1, 2, 3, 4]), 4), Some((&'b', 2)));
        assert_eq!(cache.peek(&toks(&[1, 2, 3]), 4), 2);
        assert_eq!(cache.best(&toks(&[1, 2, 3]), 1), None);
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let mut cache = PrefixCache::new(0, 100);
        assert!(!cache.fits(1));
        cache.keep(&toks(&[1, 2]), 'a', 10);
        assert_eq!(cache.best(&toks(&[1, 2]), usize::MAX), None);
        let mut one = PrefixCache::new(1, 100);
        one.keep(&[], 'a', 10);
        // A state larger than the whole budget is not kept.
        assert!(!one.fits(101) && one.fits(100));
        one.keep(&toks(&[1]), 'b', 101);
        assert_eq!(one.len(), 0);
    }
}
