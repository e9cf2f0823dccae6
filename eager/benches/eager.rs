//! EAGER benchmark (placeholder).
fn main() {}
