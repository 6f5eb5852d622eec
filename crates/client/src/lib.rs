//! porthole-client (skeleton).
