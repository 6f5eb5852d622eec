//! porthole-proto (skeleton).
