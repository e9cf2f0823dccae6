//! Event envelopes: what a mutation or a named trigger emits into the outbox and over EAGER.
