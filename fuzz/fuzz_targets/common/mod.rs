//! What the framing targets share.

use std::fmt::Debug;

use optillm_core::BackendError;
use optillm_http::framing::{Framer, frames_of};

/// Reads `data` with framer `F`: its first byte sets the chunk size, its second the cap,
/// the rest is the body. The body fed whole and cut into chunks gives the same frames;
/// with the cap, the reading stops only with `TooLarge` for that cap, and otherwise
/// gives the same frames too. The frames of the whole body.
pub fn framing<F: Framer>(data: &[u8]) -> Vec<F::Frame>
where
    F::Frame: PartialEq + Debug,
{
    let [size, cap, body @ ..] = data else {
        return Vec::new();
    };
    let size = usize::from(*size).max(1);
    let limit = usize::from(*cap) * 16 + 1;
    let (whole, none) = frames_of::<F>(&[body], usize::MAX);
    assert!(none.is_none());
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let (cut, none) = frames_of::<F>(&chunks, usize::MAX);
    assert!(none.is_none());
    assert_eq!(cut, whole);
    match frames_of::<F>(&chunks, limit) {
        (capped, None) => assert_eq!(capped, whole),
        (_, Some(BackendError::TooLarge { limit: l, .. })) if l == limit => {}
        (_, Some(e)) => panic!("{e:?}"),
    }
    whole
}
