//! The six BVER primitives' contracts: definition, invocation, result (spec/primitive-contracts.md).
