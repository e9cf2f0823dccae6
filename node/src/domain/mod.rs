//! Domain definitions: bundles and figments on disk, compiled into a [`Domain`] registry.
//!
//! The flow, one module per step:
//!
//! - [`load`](load()) finds each `bundle.toml` and `figment.toml` under the given directories
//!   and reads them section by section with spans (`load.rs`), checking each JSON Schema
//!   fragment on its own (`schema.rs`);
//! - `compile.rs` checks the definitions against each other (one core bundle, one owner per
//!   namespace and per repo, figment includes without cycles, kinds and their parents),
//!   composes the schema of every reference type and kind, and compiles one validator each;
//! - [`ops`] generates the operations of every repo plus the resolver operations;
//! - [`manifest`] renders one deterministic `bver.manifest.json` per bundle.
//!
//! Every problem is collected: [`load`](load()) returns all of them as [`DefinitionErrors`],
//! each with file, line, column, message and a fix hint. The file format and the generated
//! operations are documented in `docs/domain.md`.

mod compile;
pub mod contract;
mod error;
pub mod expr;
mod load;
pub mod manifest;
mod names;
pub mod ops;
mod registry;
mod schema;

use std::path::{Path, PathBuf};

pub use contract::CONTRACT_FILE;
pub use error::{DefinitionError, DefinitionErrorKind, DefinitionErrors, Location};
pub use load::{BUNDLE_FILE, FIGMENT_FILE};
pub use registry::{
    Action, Bundle, Channel, ContractUse, DeclaredTrigger, Domain, Figment, FigmentOperation, Kind,
    Policy, RefEvent, RefType, Role, Trigger, TriggerSource, Violation,
};

/// Load and compile a platform's domain from `dirs`.
///
/// Each entry is a bundle directory (with `bundle.toml`), a figment directory (with
/// `figment.toml`), one of those two files, or any other directory, which is searched for
/// bundle and figment directories below it (hidden directories are skipped; a bundle or
/// figment directory is not searched further). Together they must hold exactly one core
/// bundle.
///
/// # Errors
///
/// Every problem found, each with its location and a fix hint.
pub fn load(dirs: &[impl AsRef<Path>]) -> Result<Domain, DefinitionErrors> {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.as_ref().to_path_buf()).collect();
    let mut errors = Vec::new();
    let loaded = load::load_dirs(&dirs, &mut errors);
    match compile::compile(loaded, &mut errors) {
        Some(domain) if errors.is_empty() => Ok(domain),
        _ => Err(DefinitionErrors::new(errors)),
    }
}

/// Load one contract package: `dir` holds (or is) its `contract.toml`.
///
/// # Errors
///
/// Every problem found in it; also when `dir` holds no contract package, or several.
pub fn load_contract(dir: impl AsRef<Path>) -> Result<contract::ContractPackage, DefinitionErrors> {
    let dir = dir.as_ref().to_path_buf();
    let mut errors = Vec::new();
    let loaded = load::load_dirs(std::slice::from_ref(&dir), &mut errors);
    let packages = compile::compile_contracts(&loaded.contracts, &mut errors);
    if !errors.is_empty() {
        return Err(DefinitionErrors::new(errors));
    }
    let mut packages = packages.into_values().map(|(p, _)| p);
    match (packages.next(), packages.next()) {
        (Some(p), None) => Ok(p),
        _ => Err(DefinitionErrors::new(vec![DefinitionError::at(
            Location::file_start(&dir),
            DefinitionErrorKind::InvalidValue {
                section: contract::CONTRACT_FILE.into(),
                message: format!(
                    "expected exactly one contract package (a directory with `{}`) in {}",
                    contract::CONTRACT_FILE,
                    dir.display()
                ),
            },
        )])),
    }
}
