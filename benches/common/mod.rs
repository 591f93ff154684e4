//! Shared setup of the native benches: which model, how many threads, the prompts.
//!
//! - `OPTILLM_BENCH_MODEL`: any name `optillm::open` takes: a manifest name
//!   (`smollm2-135m`), a GGUF path, a `hf:` spec or URL; pulled into the cache when
//!   missing. Default: the manifest's default model.
//! - `OPTILLM_BENCH_THREADS`: CPU threads of llama.cpp (default 2).
//! - `OPTILLM_BENCH_FLASH_ATTN`: `on`, `off` or `auto` (default `auto`, as llama.cpp's tools).
//! - `OPTILLM_BENCH_PREFIX_CACHE`: prompts kept for prefix reuse (default: the backend's,
//!   but 0 in `native_reference`; 0 turns reuse off, so every request evaluates its whole
//!   prompt).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use optillm::{Backend, ChatRequest, Completion, FinishReason, LlamaConfig, Message, Sampling};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// Tokens of the prompt-throughput test (llama-bench `-p 256`).
pub const PROMPT_TOKENS: u32 = 256;
/// Tokens of the decode test and of each sample of the n-scaling test (`-n 128`, `-ntg 128`).
pub const GEN_TOKENS: u32 = 128;
/// Sample counts of the scaling test (`-npl 1,2,4,8`).
pub const N_SAMPLES: [u32; 4] = [1, 2, 4, 8];

/// A loaded native backend and a runtime to drive it.
pub struct Native {
    pub backend: Arc<dyn Backend>,
    /// `native/<model>` prefix of the bench names.
    pub prefix: String,
    pub path: PathBuf,
    pub threads: i32,
    pub rt: tokio::runtime::Runtime,
}

/// Threads from `OPTILLM_BENCH_THREADS` (default 2).
pub fn threads() -> Result<i32, BoxError> {
    match std::env::var("OPTILLM_BENCH_THREADS") {
        Ok(v) => Ok(v.trim().parse()?),
        Err(_) => Ok(2),
    }
}

fn flash_attention() -> Result<Option<bool>, BoxError> {
    match std::env::var("OPTILLM_BENCH_FLASH_ATTN").as_deref() {
        Err(_) | Ok("auto") => Ok(None),
        Ok("on") => Ok(Some(true)),
        Ok("off") => Ok(Some(false)),
        Ok(other) => {
            Err(format!("OPTILLM_BENCH_FLASH_ATTN must be on, off or auto, not `{other}`").into())
        }
    }
}

/// Prompts kept for prefix reuse, from `OPTILLM_BENCH_PREFIX_CACHE`, else `default`.
pub fn prefix_cache(default: u32) -> Result<u32, BoxError> {
    match std::env::var("OPTILLM_BENCH_PREFIX_CACHE") {
        Ok(v) => Ok(v.trim().parse()?),
        Err(_) => Ok(default),
    }
}

/// The first `words` words of a plain filler text, repeated as needed.
fn filler(words: usize) -> String {
    const TEXT: &str = "The river runs past the old mill where the miller keeps his \
        grain in wooden barrels and the children play near the water on warm summer \
        evenings while their parents talk about the harvest the weather and the market";
    let text: Vec<&str> = TEXT.split_whitespace().cycle().take(words).collect();
    text.join(" ")
}

impl Native {
    /// Loads the bench model (`OPTILLM_BENCH_MODEL`, else the default model; pulled when
    /// missing, as `optillm run` does) with the bench settings (context 4096, like
    /// `-c 4096`).
    #[allow(dead_code)] // native_reference chooses its prefix cache with `load_with`
    pub fn load() -> Result<Self, BoxError> {
        Self::load_with(prefix_cache(LlamaConfig::default().prefix_cache)?)
    }

    /// [`Native::load`] keeping `prefix_cache` prompts for prefix reuse.
    pub fn load_with(prefix_cache: u32) -> Result<Self, BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let model = match std::env::var("OPTILLM_BENCH_MODEL") {
            Ok(name) => name,
            Err(_) => optillm::models::default_model()?.name.clone(),
        };
        let threads = threads()?;
        let config = LlamaConfig {
            n_ctx: Some(4096),
            n_threads: Some(threads),
            flash_attention: flash_attention()?,
            prefix_cache,
            ..LlamaConfig::default()
        };
        let options = optillm::OpenOptions::new().pull(true).llama_config(config);
        // Found (and pulled) once; the file is then opened by its path.
        let (path, name) = rt.block_on(optillm::locate(&model, &options))?;
        let file = path.to_str().ok_or("the model's path is not UTF-8")?;
        let backend = rt.block_on(optillm::open(file, options))?;
        Ok(Self {
            backend,
            prefix: format!("native/{}", name.to_lowercase()),
            path,
            threads,
            rt,
        })
    }

    pub fn complete(&self, request: ChatRequest) -> Result<Completion, BoxError> {
        Ok(self.rt.block_on(self.backend.complete(request))?)
    }

    /// A request whose prompt (chat template included) is exactly `target` tokens,
    /// built by repeating plain text and checking the count in `usage`.
    pub fn prompt_of(&self, target: u32) -> Result<ChatRequest, BoxError> {
        let request = |words: usize| {
            ChatRequest::new(vec![
                Message::system("Summarise."),
                Message::user(filler(words)),
            ])
            .with_sampling(Sampling::default().with_temperature(0.0).with_max_tokens(1))
        };
        Ok(request(self.words_for(target, request)?))
    }

    /// The words of notes that make [`long_story`]'s prompt exactly `target` tokens.
    #[allow(dead_code)] // native_reference's only
    pub fn long_story_words(&self, target: u32) -> Result<usize, BoxError> {
        self.words_for(target, |words| long_story(words, 1, 1, 1))
    }

    /// The filler words that make `build(words)`'s prompt exactly `target` tokens.
    fn words_for(
        &self,
        target: u32,
        build: impl Fn(usize) -> ChatRequest,
    ) -> Result<usize, BoxError> {
        let mut count = target as usize;
        for _ in 0..12 {
            let got = self.complete(build(count))?.usage.prompt_tokens;
            if got == target {
                return Ok(count);
            }
            let diff = i64::from(target) - i64::from(got);
            count = usize::try_from(count as i64 + diff).map_err(|_| "prompt too long")?;
            if count == 0 {
                return Err("the chat template alone is longer than the target".into());
            }
        }
        Err(format!("could not build a prompt of exactly {target} tokens").into())
    }

    /// The first seed from 1 whose sample of [`story`] runs the full `max_tokens`
    /// (no end-of-text before), so decode tests really decode `max_tokens` tokens.
    pub fn full_length_seed(&self, max_tokens: u32) -> Result<u32, BoxError> {
        for seed in 1..=20 {
            let c = self.complete(story(max_tokens, 1, seed))?;
            let full = c
                .choices
                .first()
                .is_some_and(|ch| ch.finish_reason == FinishReason::Length);
            if full && c.usage.completion_tokens == max_tokens {
                return Ok(seed);
            }
        }
        Err(format!("no seed in 1..=20 gave {max_tokens} tokens without an early stop").into())
    }
}

/// A short prompt that makes the model write at length (sampled, llama.cpp's default
/// settings), `n` samples from seeds `seed..seed + n`.
pub fn story(max_tokens: u32, n: u32, seed: u32) -> ChatRequest {
    ChatRequest::user("Write a long, detailed story about a lighthouse keeper and a storm at sea.")
        .with_sampling(
            Sampling::default()
                .with_max_tokens(max_tokens)
                .with_seed(seed),
        )
        .with_n(n)
}

/// [`story`] after `words` words of notes in the system message: a prompt the size of a
/// strategy's (a question with its instructions), where sharing its evaluation matters.
#[allow(dead_code)] // native_reference's only
pub fn long_story(words: usize, max_tokens: u32, n: u32, seed: u32) -> ChatRequest {
    let mut request = story(max_tokens, n, seed);
    request.messages.insert(
        0,
        Message::system(format!("Notes for the story: {}.", filler(words))),
    );
    request
}
