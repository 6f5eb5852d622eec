//! The VM suites' case results: a case returns an [`Outcome`], and the suite reports every
//! failed case at the end instead of stopping at the first (one TCG boot serves them all).

/// A case's result: the failure says what went wrong.
pub type Outcome = Result<(), String>;

/// Turns any displayable error into a case failure.
pub fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `Ok` when `condition` holds, else the failure `what` describes.
pub fn check(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}
