//! Join tokens and signup tokens (being written).
