//! The Python-subset interpreter and the arithmetic evaluator, which run model-written
//! text: a result or a typed failure, never a panic (which the interpreter's thread
//! would return as `Internal`), never more steps than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::arith;
use optillm_core::pyeval::{self, Limits, PyError};

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let limits = Limits::default();
    match pyeval::run_program(&source, &limits) {
        Ok(result) => assert!(result.steps <= limits.max_steps),
        Err(failure) => assert!(!matches!(failure.error, PyError::Internal(_)), "{failure}"),
    }
    let script = pyeval::run_script(&source, &limits);
    if let Some(failure) = script.failure {
        assert!(!matches!(failure.error, PyError::Internal(_)), "{failure}");
    }
    if let Some(value) = arith::evaluate(&source) {
        assert!(value.is_finite() && value.abs() < arith::MAX_RESULT);
    }
});
