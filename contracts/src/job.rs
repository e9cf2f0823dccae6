//! Job handles: the caller's receipt for long-running work.
